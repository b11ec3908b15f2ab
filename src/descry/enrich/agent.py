"""The enrichment policy: caption, judge, retry with changed parameters, explain.

``CaptionAgent.run`` makes a first attempt with the request's (or the model's) prompt, task and
parameters, judges the caption (``quality.judge``), and when something is wrong tries again with
parameters chosen for the problem: verbose mode for short captions, more tokens for cut-off ones,
a repetition penalty and beam search for loops, a stricter prompt for refusals, preambles and
markdown. It keeps the best attempt and writes a plain-language reasoning trace.

Trace sentences start with the ``TRACE_*`` prefixes below; callers and tests may rely on them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from descry.backends.base import Capabilities, Generation, ModelSpec, Prompted
from descry.config import AgentSettings
from descry.enrich import quality
from descry.enrich.language import language_name
from descry.enrich.quality import Problem
from descry.errors import DescryError
from descry.schemas import Attempt, CaptionRequest, GenerationParams

Generate = Callable[[Prompted], Awaitable[Generation]]

TRACE_START = "Caption generated using"
TRACE_INITIAL = "Initial caption:"
TRACE_CLEANED = "Cleaned the caption:"
TRACE_RETRY = "Caption was"
TRACE_NEW = "New caption:"
TRACE_PASSED = "All checks passed"
TRACE_PROBLEMS = "Problems remain"
TRACE_NO_CHANGE = "No other parameters"
TRACE_LIMIT = "Stopped after"
TRACE_FAILED = "Retry failed:"
TRACE_SKIPPED = "Checks were skipped:"
TRACE_TRIMMED = "Trimmed"
TRACE_KEPT = "Kept attempt"

TASK_LADDER = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
VERBOSE_SUFFIX = "Write two or three complete sentences about the subjects, the setting and the details."
STRICT_SUFFIX = "Reply with a plain caption only: no introduction, no apology, no lists and no markdown."
PROBLEM_WORDS = {
    Problem.empty: "empty",
    Problem.too_short: "short",
    Problem.cut_off: "cut off",
    Problem.repetitive: "repetitive",
    Problem.refusal: "a refusal",
    Problem.preamble: "wrapped in a preamble",
    Problem.markdown: "formatted as markdown",
    Problem.wrong_language: "in the wrong language",
}
CLEAN_WORDS = {Problem.preamble: "a preamble", Problem.markdown: "markdown formatting"}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
MAX_CROPS = 16
QUOTE_CHARS = 300


@dataclass(frozen=True)
class Plan:
    """What one attempt sends to the model."""

    prompt: str | None
    task: str | None
    params: GenerationParams
    options: dict[str, Any] = field(default_factory=dict)

    def prompted(self, image: Image.Image) -> Prompted:
        return Prompted(
            image=image, prompt=self.prompt, task=self.task, params=self.params, options=dict(self.options)
        )


@dataclass
class AgentOutcome:
    """The kept caption, every attempt, which one was kept (0-based) and why."""

    caption: str
    attempts: list[Attempt]
    chosen: int
    trace: list[str]
    generation: Generation


@dataclass
class _Tried:
    attempt: Attempt
    problems: list[Problem]
    generation: Generation


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > QUOTE_CHARS:
        flat = flat[: QUOTE_CHARS - 1].rstrip() + "…"
    return f'"{flat}"'


def _ordinal(number: int) -> str:
    return ORDINALS[number - 1] if 0 < number <= len(ORDINALS) else f"{number}th"


def _problem_list(problems: list[Problem]) -> str:
    names = [PROBLEM_WORDS[p] for p in problems]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def is_caption_task(task: str | None) -> bool:
    """True for free-text caption tasks; detection, OCR and the like return other things."""
    return task is None or "CAPTION" in task.upper()


class CaptionAgent:
    """Runs the attempt → judge → retry loop for one image at a time."""

    def __init__(
        self, generate: Generate, spec: ModelSpec, capabilities: Capabilities, settings: AgentSettings
    ):
        self.generate = generate
        self.spec = spec
        self.caps = capabilities
        self.settings = settings

    def initial_plan(self, request: CaptionRequest) -> Plan:
        """The first attempt: the request's choices over the model's defaults."""
        spec = self.spec
        detailed = request.detail == "detailed"
        prompt = request.prompt
        if prompt is None and self.caps.prompt:
            prompt = (spec.detailed_prompt if detailed else None) or spec.default_prompt
        task = request.task or (spec.detailed_task if detailed else None) or spec.default_task
        task = task or self.caps.default_task
        params = request.params.merged_over(spec.params)
        return Plan(prompt=prompt, task=task, params=params, options={})

    async def run(self, image: Image.Image, request: CaptionRequest) -> AgentOutcome:
        """Caption ``image``, retrying with changed parameters until a caption passes or attempts run out."""
        plan = self.initial_plan(request)
        trace = [self._start_sentence(plan)]
        generation = await self.generate(plan.prompted(image))
        if not self.settings.enabled or not is_caption_task(plan.task):
            return self._unchecked(plan, generation, trace)
        tried = [self._judge(plan, generation, trace, number=1)]
        while tried[-1].problems:
            number = len(tried) + 1
            if number > self.settings.max_attempts:
                plural = "s" if len(tried) > 1 else ""
                trace.append(f"{TRACE_LIMIT} {len(tried)} attempt{plural}, the limit set by max_attempts.")
                break
            new_plan, changes = self.revise(plan, tried[-1].problems)
            if new_plan == plan:
                trace.append(
                    f"{TRACE_NO_CHANGE} could address the remaining problems, so no further attempt was made."
                )
                break
            what = _problem_list(tried[-1].problems)
            how = "; ".join(changes)
            trace.append(f"{TRACE_RETRY} {what}, so a {_ordinal(number)} attempt was made using {how}.")
            plan = new_plan
            try:
                generation = await self.generate(plan.prompted(image))
            except DescryError as exc:
                trace.append(f"{TRACE_FAILED} attempt {number} raised {exc.code} ({exc}).")
                break
            tried.append(self._judge(plan, generation, trace, number=number))
        return self._choose(tried, trace)

    def _start_sentence(self, plan: Plan) -> str:
        if plan.prompt and plan.task:
            basis = f"the {plan.task} task and prompt context"
        elif plan.prompt:
            basis = "prompt context"
        elif plan.task:
            basis = f"the {plan.task} task"
        else:
            basis = "no prompt"
        return f"{TRACE_START} visual features and {basis}."

    def _unchecked(self, plan: Plan, generation: Generation, trace: list[str]) -> AgentOutcome:
        why = (
            "the agent is turned off"
            if not self.settings.enabled
            else f"task {plan.task} does not return a caption"
        )
        text = generation.text.strip()
        trace.append(f"{TRACE_SKIPPED} {why}.")
        attempt = self._attempt(plan, text, generation, [])
        return AgentOutcome(caption=text, attempts=[attempt], chosen=0, trace=trace, generation=generation)

    def _attempt(self, plan: Plan, text: str, generation: Generation, problems: list[Problem]) -> Attempt:
        params: dict[str, Any] = plan.params.model_dump(exclude_none=True)
        params.update(plan.options)
        return Attempt(
            caption=text,
            params=params,
            prompt=plan.prompt,
            task=plan.task,
            problems=[str(p) for p in problems],
            output_tokens=generation.output_tokens,
        )

    def _check(self, text: str, finish_reason: str) -> list[Problem]:
        return quality.judge(
            text,
            finish_reason=finish_reason,
            min_words=self.settings.min_words,
            language=self.settings.language,
        )

    def _judge(self, plan: Plan, generation: Generation, trace: list[str], *, number: int) -> _Tried:
        raw = generation.text or ""
        trace.append(f"{TRACE_INITIAL if number == 1 else TRACE_NEW} {_quote(raw)}")
        raw_problems = self._check(raw, generation.finish_reason)
        text = quality.clean(raw)
        problems = self._check(text, generation.finish_reason) if text != raw.strip() else raw_problems
        fixed = [CLEAN_WORDS[p] for p in raw_problems if p not in problems and p in CLEAN_WORDS]
        if fixed or text != raw.strip():
            what = " and ".join(fixed) if fixed else "extra spaces, quotes or artefact words"
            trace.append(f"{TRACE_CLEANED} removed {what} from attempt {number}.")
        if problems:
            trace.append(f"{TRACE_PROBLEMS} after attempt {number}: {_problem_list(problems)}.")
        else:
            trace.append(f"{TRACE_PASSED} on attempt {number}.")
        return _Tried(self._attempt(plan, text, generation, problems), problems, generation)

    def revise(self, plan: Plan, problems: list[Problem]) -> tuple[Plan, list[str]]:
        """The next plan for these problems, and what changed in words; the same plan when nothing can."""
        changes: list[str] = []
        found = set(problems)
        if found & {Problem.empty, Problem.too_short}:
            plan = self._verbose(plan, changes)
        if Problem.cut_off in found:
            plan = self._more_tokens(plan, changes)
        if Problem.repetitive in found:
            plan = self._no_repeat(plan, changes)
        if found & {Problem.refusal, Problem.preamble, Problem.markdown, Problem.wrong_language}:
            plan = self._strict(plan, changes, language=Problem.wrong_language in found)
        if found & {Problem.refusal, Problem.empty}:
            plan = self._more_pixels(plan, changes)
        return plan, changes

    def _grow_tokens(self, plan: Plan) -> int:
        current = plan.params.max_new_tokens or self.settings.token_floor
        return min(self.settings.max_new_tokens_cap, max(2 * current, self.settings.token_floor))

    def _with_params(self, plan: Plan, **update: Any) -> Plan:
        return replace(plan, params=GenerationParams(**{**plan.params.model_dump(), **update}))

    def _more_tokens(self, plan: Plan, changes: list[str]) -> Plan:
        before = plan.params.max_new_tokens
        after = self._grow_tokens(plan)
        if before is not None and after <= before:
            return plan
        changes.append(f"more tokens (max_new_tokens {before} → {after})")
        return self._with_params(plan, max_new_tokens=after)

    def _next_task(self, task: str | None) -> str | None:
        """A more detailed caption task than ``task`` that the model supports, if any."""
        if task in TASK_LADDER:
            for candidate in TASK_LADDER[TASK_LADDER.index(task) + 1 :]:
                if candidate in self.caps.tasks:
                    return candidate
        detailed = self.spec.detailed_task
        if task and task == self.spec.default_task and detailed and detailed != task:
            return detailed
        return None

    def _verbose(self, plan: Plan, changes: list[str]) -> Plan:
        how: list[str] = []
        next_task = self._next_task(plan.task)
        if next_task:
            plan = replace(plan, task=next_task)
            how.append(f"the {next_task} task")
        elif plan.prompt is not None and self.caps.instruct:
            prompt = plan.prompt
            detailed = self.spec.detailed_prompt
            if detailed and prompt == self.spec.default_prompt and detailed != prompt:
                plan = replace(plan, prompt=detailed)
                how.append("the detailed prompt")
            elif VERBOSE_SUFFIX not in prompt:
                plan = replace(plan, prompt=f"{prompt.rstrip()} {VERBOSE_SUFFIX}")
                how.append("a more explicit prompt")
        grown = self._grow_tokens(plan)
        if not self.caps.instruct and not next_task:
            floor = min(2 * self.settings.min_words, grown - 1)
            if floor > (plan.params.min_new_tokens or 0):
                plan = self._with_params(plan, min_new_tokens=floor)
                how.append(f"min_new_tokens {floor}")
        before = plan.params.max_new_tokens
        if before is None or grown > before:
            plan = self._with_params(plan, max_new_tokens=grown)
            how.append(f"max_new_tokens {before} → {grown}")
        if how:
            changes.append(f"verbose mode ({', '.join(how)})")
        return plan

    def _no_repeat(self, plan: Plan, changes: list[str]) -> Plan:
        how: list[str] = []
        penalty = plan.params.repetition_penalty or 1.0
        new_penalty = 1.3 if penalty < 1.3 else round(min(penalty + 0.2, 2.0), 2)
        if new_penalty > penalty:
            plan = self._with_params(plan, repetition_penalty=new_penalty)
            how.append(f"repetition_penalty {new_penalty}")
        if (plan.params.num_beams or 1) < 3:
            plan = self._with_params(plan, num_beams=3)
            how.append("num_beams 3")
        if how:
            changes.append(f"a repetition penalty ({', '.join(how)})")
        return plan

    def _strict(self, plan: Plan, changes: list[str], *, language: bool) -> Plan:
        if plan.prompt is None or not self.caps.instruct:
            if (plan.params.num_beams or 1) < 3:
                changes.append("beam search (num_beams 3)")
                return self._with_params(plan, num_beams=3)
            return plan
        additions = []
        if STRICT_SUFFIX not in plan.prompt:
            additions.append(STRICT_SUFFIX)
        lang = self.settings.language or ""
        sentence = f"Write it in {language_name(lang)}."
        if language and lang and sentence not in plan.prompt:
            additions.append(sentence)
        if not additions:
            return plan
        changes.append("a stricter prompt")
        return replace(plan, prompt=" ".join([plan.prompt.rstrip(), *additions]))

    def _more_pixels(self, plan: Plan, changes: list[str]) -> Plan:
        options = dict(plan.options)
        how: list[str] = []
        base_crops = self.spec.options.get("num_crops")
        if isinstance(base_crops, int):
            crops = int(options.get("num_crops", base_crops))
            if crops < MAX_CROPS:
                options["num_crops"] = min(MAX_CROPS, max(2 * crops, 4))
                how.append(f"num_crops {options['num_crops']}")
        base_pixels = self.spec.options.get("max_pixels")
        if isinstance(base_pixels, int):
            pixels = int(options.get("max_pixels", base_pixels))
            if pixels < 4 * base_pixels:
                options["max_pixels"] = min(4 * base_pixels, 2 * pixels)
                how.append(f"max_pixels {options['max_pixels']}")
        if not how:
            return plan
        changes.append(f"more of the image ({', '.join(how)})")
        return replace(plan, options=options)

    def _rank(self, tried: _Tried, index: int) -> tuple[int, int, int]:
        length = min(len(quality.words(tried.attempt.caption)), self.settings.prefer_words_up_to)
        return quality.severity(tried.problems), -length, index

    def _choose(self, tried: list[_Tried], trace: list[str]) -> AgentOutcome:
        best = min(range(len(tried)), key=lambda i: self._rank(tried[i], i))
        kept = tried[best]
        caption = kept.attempt.caption
        if Problem.cut_off in kept.problems:
            trimmed = trim_unfinished(caption)
            if trimmed != caption and len(quality.words(trimmed)) >= self.settings.min_words:
                trace.append(f"{TRACE_TRIMMED} the unfinished last sentence of attempt {best + 1}.")
                caption = trimmed
        reason = (
            "it passed all checks" if not kept.problems else "it had the fewest and least severe problems"
        )
        trace.append(f"{TRACE_KEPT} {best + 1} of {len(tried)} because {reason}.")
        attempts = [t.attempt for t in tried]
        return AgentOutcome(
            caption=caption, attempts=attempts, chosen=best, trace=trace, generation=kept.generation
        )


def trim_unfinished(text: str) -> str:
    """``text`` up to its last complete sentence, or unchanged when it has none."""
    cut = max(text.rfind(mark) for mark in ".!?")
    if cut <= 0:
        return text
    return text[: cut + 1].strip()
