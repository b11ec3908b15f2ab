"""Caption checks: what is wrong with a caption, and the fixes that need no second attempt.

``judge`` lists the problems of a caption; ``clean`` strips what can be stripped (a preamble
such as "This image shows", markdown emphasis, surrounding quotes) so that a caption whose
only fault was its wrapping is kept instead of retried. Everything here is pure and offline.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from enum import StrEnum


class Problem(StrEnum):
    """One thing wrong with a caption."""

    empty = "empty"
    too_short = "too_short"
    cut_off = "cut_off"
    repetitive = "repetitive"
    refusal = "refusal"
    preamble = "preamble"
    markdown = "markdown"
    wrong_language = "wrong_language"


# how bad each problem is when choosing between attempts (higher is worse)
SEVERITY: dict[Problem, int] = {
    Problem.empty: 100,
    Problem.refusal: 60,
    Problem.repetitive: 40,
    Problem.wrong_language: 35,
    Problem.cut_off: 25,
    Problem.too_short: 15,
    Problem.markdown: 8,
    Problem.preamble: 3,
}

WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*", re.UNICODE)
TERMINAL = ".!?…。！？\"'”’)]"
DANGLING = frozenset(
    "a an the and or but of with on in at to from by for into onto over under near its their his her "
    "our your my this that these those is are was were be being been has have had while as than "
    "which who whose where when very some".split()
)

PREAMBLE = re.compile(
    r"""^\s*(?:
        (?:sure|certainly|of\s+course|okay|ok)\s*[,!.:]\s*
      )?(?:
        here(?:\s+is|'s|’s)\s+(?:[\w\-]+,?\s+){0,3}?(?:caption|description)
            (?:\s+(?:of|for)\s+(?:this|the)\s+(?:image|picture|photo(?:graph)?))?\s*[:.\-–—]\s*
      | (?:(?:improved|revised|polished|new|final|short|brief|detailed)\s+)?(?:caption|description)\s*:\s*
      | (?:this|the)\s+(?:image|picture|photo(?:graph)?|scene|shot)\s+
            (?:shows|depicts|features|displays|contains|captures|presents|portrays|illustrates|
               is\s+of|is\s+showing|appears\s+to\s+show|shows\s+us)\s*(?::\s*)?
      | in\s+(?:this|the)\s+(?:image|picture|photo(?:graph)?)\s*,?\s*
            (?:(?:we|you)\s+can\s+see|there\s+(?:is|are)|I\s+can\s+see)?\s*
      | (?:this\s+is\s+)?(?:a|an)\s+(?:image|picture|photo(?:graph)?)\s+(?:of|showing|depicting)\s+
    )""",
    re.IGNORECASE | re.VERBOSE,
)

REFUSAL = re.compile(
    r"""^\s*(?:
        i\s*(?:'m|’m|am)\s+(?:sorry|afraid|unable|not\s+able)
      | i\s+(?:cannot|can't|can’t|can\s+not|won't|will\s+not|am\s+unable|do\s+not|don't|don’t)\s+
            (?:help|assist|provide|describe|see|identify|view|access|comply|process|caption|determine|tell)
      | i\s+apologi[sz]e
      | sorry\b
      | unfortunately\s*,?\s+i\b
      | as\s+an\s+ai\b
      | (?:there\s+is\s+)?no\s+image\s+(?:was\s+|has\s+been\s+)?(?:provided|attached|uploaded|given)
      | (?:n/?a|none|unknown|no\s+caption|nothing)\s*[.!]?\s*$
    )""",
    re.IGNORECASE | re.VERBOSE,
)
AS_AN_AI = re.compile(r"\bas an ai(?: language)? model\b|\bi(?:'m| am) an ai\b", re.IGNORECASE)

# BLIP's well-known artefact words ("arafed man", "araffe") that stand for nothing
ARTEFACT = re.compile(r"\b(?:ara+f+(?:ed|e|y|ly|es)?|arafed)\b\s*", re.IGNORECASE)

MD_LINE = re.compile(r"^\s*(?:#{1,6}\s+|[-*+•]\s+|\d{1,2}[.)]\s+|>\s+|```|\|.*\|\s*$)", re.MULTILINE)
MD_INLINE = re.compile(
    r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1|(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])|`([^`\n]+)`"
)
MD_HEADER = re.compile(r"^\s*#{1,6}\s+", re.MULTILINE)
MD_FENCE = re.compile(r"^\s*```\w*\s*$", re.MULTILINE)
MD_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\|")
MD_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+", re.MULTILINE)

# frequent function words per language; English words are removed from the others before comparing
STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the a an and of in on with is are to at by for from its it this that there their his her "
        "while as or into near over under two three some people man woman".split()
    ),
    "de": frozenset(
        "der die das und ein eine einem einen einer ist sind mit auf im in von zu den dem des sich "
        "vor neben über unter bei auch nicht zwei drei".split()
    ),
    "fr": frozenset(
        "le la les un une et de du des est sont avec sur dans au aux par pour en qui ce cette son sa "
        "ses deux trois devant".split()
    ),
    "es": frozenset(
        "el la los las un una y de del es son con en por para que al se su sus dos tres sobre "
        "frente junto".split()
    ),
    "it": frozenset(
        "il lo la gli le un una uno e di del della dei delle è sono con su in per che al alla nel "
        "nella sul sulla due tre".split()
    ),
    "pt": frozenset(
        "o a os as um uma e de do da dos das é são com em no na nos nas por para que ao sobre "
        "dois duas três".split()
    ),
    "nl": frozenset(
        "de het een en van is zijn met op in aan bij voor naar die dat er twee drie staat ligt".split()
    ),
}


def words(text: str) -> list[str]:
    """The lowercase words of a text (letters and digits, inner apostrophes and hyphens kept)."""
    return [w.lower() for w in WORD.findall(text or "")]


def _is_cut_off(text: str, tokens: list[str], finish_reason: str) -> bool:
    if finish_reason == "length":
        return True
    stripped = text.rstrip()
    if not stripped or stripped[-1] in TERMINAL:
        return False
    if stripped[-1] in ",;:-–—(/&":
        return True
    return bool(tokens) and tokens[-1] in DANGLING and len(tokens) >= 3


def _has_run(tokens: list[str], run: int = 3) -> bool:
    """The same word ``run`` or more times in a row."""
    count = 1
    for prev, cur in zip(tokens, tokens[1:], strict=False):
        count = count + 1 if cur == prev else 1
        if count >= run:
            return True
    return False


def _has_adjacent_repeat(tokens: list[str], min_len: int = 3) -> bool:
    """A span of ``min_len``+ words immediately followed by itself ("on the beach on the beach")."""
    n_tokens = len(tokens)
    for size in range(min_len, n_tokens // 2 + 1):
        for start in range(0, n_tokens - 2 * size + 1):
            if tokens[start : start + size] == tokens[start + size : start + 2 * size]:
                return True
    return False


def _has_frequent_ngram(tokens: list[str]) -> bool:
    """A phrase of 3-6 words occurring three or more times."""
    for size in range(3, 7):
        grams = Counter(tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1))
        if grams and grams.most_common(1)[0][1] >= 3:
            return True
    return False


def _has_repeated_sentence(text: str) -> bool:
    sentences = [" ".join(words(s)) for s in re.split(r"[.!?\n]+", text)]
    seen = Counter(s for s in sentences if len(s.split()) >= 3)
    return any(n >= 2 for n in seen.values())


def is_repetitive(text: str, tokens: list[str] | None = None) -> bool:
    """Degenerate loops: word runs, immediate repeats, frequent phrases, repeated sentences, low variety."""
    tokens = words(text) if tokens is None else tokens
    if len(tokens) < 3:
        return False
    if _has_run(tokens) or _has_adjacent_repeat(tokens) or _has_frequent_ngram(tokens):
        return True
    if _has_repeated_sentence(text):
        return True
    return len(tokens) >= 30 and len(set(tokens)) / len(tokens) < 0.35


def is_refusal(text: str) -> bool:
    """Refusals and non-answers ("I'm sorry…", "As an AI…", "N/A")."""
    head = text.strip().strip("\"'“”‘’*_ ")
    return bool(REFUSAL.match(head) or AS_AN_AI.search(head[:400]))


def has_preamble(text: str) -> bool:
    """Starts with "This image shows", "Here is a caption:" and the like."""
    return bool(PREAMBLE.match(text.strip().strip("\"'“”*_ ")))


def has_markdown(text: str) -> bool:
    """Headers, bullets, numbered lists, quotes, tables, fences, bold, italics, code, or a JSON document."""
    return bool(MD_LINE.search(text) or MD_INLINE.search(text) or MD_TABLE.search(text) or is_json(text))


def is_json(text: str) -> bool:
    """The whole answer is a JSON object or array rather than a sentence."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        return isinstance(json.loads(stripped), dict | list)
    except ValueError:
        return stripped[-1:] in "}]"


def detect_language(tokens: list[str], expected: str) -> str | None:
    """Another language the words are clearly in, or None when they look like ``expected`` or unsure.

    For a language without a word list here, only English (what models fall back to) is recognised.
    """
    if len(tokens) < 5:
        return None
    if expected not in STOPWORDS:
        english = sum(1 for t in tokens if t in STOPWORDS["en"])
        return "en" if english >= 3 and english / len(tokens) >= 0.25 else None
    own = sum(1 for t in tokens if t in STOPWORDS[expected])
    best, best_hits = None, 0
    for lang, stop in STOPWORDS.items():
        if lang == expected:
            continue
        distinctive = stop - STOPWORDS[expected]
        hits = sum(1 for t in tokens if t in distinctive)
        if hits > best_hits:
            best, best_hits = lang, hits
    if best_hits >= 3 and best_hits >= 2 * own + 2 and best_hits / len(tokens) >= 0.15:
        return best
    return None


def judge(
    text: str, *, finish_reason: str = "stop", min_words: int = 5, language: str | None = "en"
) -> list[Problem]:
    """Every problem found in ``text``, most severe first; an empty list means it passed."""
    if not text or not text.strip():
        return [Problem.empty]
    tokens = words(text)
    found: list[Problem] = []
    if is_refusal(text):
        found.append(Problem.refusal)
    if is_repetitive(text, tokens):
        found.append(Problem.repetitive)
    if language and detect_language(tokens, language.lower()[:2]):
        found.append(Problem.wrong_language)
    if _is_cut_off(text, tokens, finish_reason):
        found.append(Problem.cut_off)
    if len(tokens) < min_words:
        found.append(Problem.too_short)
    if has_markdown(text):
        found.append(Problem.markdown)
    if has_preamble(text):
        found.append(Problem.preamble)
    return sorted(found, key=lambda p: -SEVERITY[p])


def severity(problems: list[Problem] | list[str]) -> int:
    """The summed severity of a list of problems."""
    return sum(SEVERITY[Problem(p)] for p in problems)


def _strip_markdown(text: str) -> str:
    text = MD_FENCE.sub("", text)
    text = MD_HEADER.sub("", text)

    def inline(match: re.Match[str]) -> str:
        return match.group(2) or match.group(3) or match.group(4) or ""

    return MD_INLINE.sub(inline, text)


def _capitalise_like(new: str, old: str) -> str:
    if new and old.lstrip()[:1].isupper():
        return new[0].upper() + new[1:]
    return new


def clean(text: str) -> str:
    """The caption without its wrapping: quotes, preamble, markdown emphasis and headers, extra spaces.

    Bullet lists are left alone (joining them would invent sentences); ``judge`` still flags them.
    """
    if not text:
        return ""
    out = ARTEFACT.sub("", _strip_markdown(text)).strip()
    for _ in range(2):
        out = out.strip().strip('"“”').strip()
        match = PREAMBLE.match(out)
        if match and match.end() < len(out):
            out = _capitalise_like(out[match.end() :].lstrip(" :,-–—"), text.strip().strip("\"'“”*_#"))
    if not MD_BULLET.search(out) and not MD_TABLE.search(out):
        out = " ".join(out.split())
    else:
        out = "\n".join(" ".join(line.split()) for line in out.splitlines() if line.strip())
    return out.strip()
