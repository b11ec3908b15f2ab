"""Words for tagging: the tokenizer, stop and generic words, and lemmas (simplemma or suffix rules)."""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

log = logging.getLogger("descry.enrich.tags")  # tagging keeps one logger name across its modules

TOKEN = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*|\d+|[^\w\s]", re.UNICODE)
STOP_WORDS = frozenset(
    """a an the this that these those there here it its it's they them their theirs he him his she her hers
    we us our ours you your yours i me my mine one ones someone something anything everything nothing
    and or but nor so yet if then than as of in on at to from by for with without into onto over under
    above below between among through across along around about against behind beside besides near
    next up down out off inside outside within upon toward towards while during before after until since
    is are was were be been being am has have had having do does did doing can could will would shall
    should may might must not no very just also too only some any each every all both either neither
    few many much more most other another such own same what which who whom whose where when why how
    appears seems shows showing shown looks looking sits sitting stands standing holds holding wears
    wearing has having lies lying seen visible located placed features featuring depicts depicting
    displays displaying captures capturing contains containing includes including appear seem show look
    sit stand hold wear lie see feature depict display capture contain include way lot lots kind sort
    type bit front back top bottom side left right middle center centre part parts one two three four five
    six seven eight nine ten dozen first second third number""".split()
)
GENERIC_WORDS = frozenset(
    """image images picture pictures photo photos photograph photographs photography shot shots snapshot
    view scene scenes background foreground frame setting shape shapes thing things object objects item
    items area areas image's various several different large small big little tall short long wide
    close closeup close-up up-close detail details color colour colors colours style""".split()
)


# generic words of image captions in other languages ("Bild", "photo", ...), dropped like GENERIC_WORDS
GENERIC_BY_LANGUAGE = {
    "de": "bild bilder foto fotos fotografie aufnahme szene hintergrund vordergrund ansicht detail details farbe",
    "fr": "image images photo photos photographie scène arrière-plan premier plan vue détail détails couleur",
    "es": "imagen imágenes foto fotos fotografía escena fondo primer plano vista detalle detalles color",
    "it": "immagine immagini foto fotografia scena sfondo primo piano vista dettaglio dettagli colore",
    "pt": "imagem imagens foto fotos fotografia cena fundo primeiro plano vista detalhe detalhes cor",
    "nl": "afbeelding beeld foto fotos foto's scène achtergrond voorgrond weergave detail details kleur",
}

CAPITALISED_NOUNS = frozenset({"de", "lb"})  # languages whose nouns are written with a capital letter


def stop_words(language: str) -> frozenset[str]:
    """Function words of a language: the built-in English list, else the ``stop-words`` package's list
    (``descry[tags]``) joined with the agent's short list; empty when neither knows the language."""
    if language == "en":
        return STOP_WORDS
    from descry.enrich.quality import STOPWORDS

    found: set[str] = set(STOPWORDS.get(language, ()))
    try:
        module: Any = importlib.import_module("stop_words")
        found.update(w.lower() for w in module.get_stop_words(language))
    except ImportError:
        log.info("stop-words is not installed; %s tags use a short stop list (pip install 'descry[tags]')", language)
    except Exception:  # noqa: BLE001 - the package raises its own error for a language it does not know
        pass
    return frozenset(found)


def generic_words(language: str) -> frozenset[str]:
    """Words that describe the picture rather than what is in it, in a language."""
    if language == "en":
        return GENERIC_WORDS
    return frozenset(GENERIC_BY_LANGUAGE.get(language, "").split())


class Lemmatizer:
    """Word → lemma, with simplemma when installed; English suffix rules otherwise (other languages:
    the word as written)."""

    def __init__(self, language: str = "en") -> None:
        self.language = language
        self._cache: dict[str, str] = {}
        try:
            self._simplemma: Any = importlib.import_module("simplemma")
        except ImportError:
            self._simplemma = None
            log.info("simplemma is not installed; tags use simple suffix rules (pip install 'descry[tags]')")

    @property
    def backend(self) -> str:
        return "simplemma" if self._simplemma is not None else "rules"

    def __call__(self, word: str) -> str:
        word = word.lower()
        if word not in self._cache:
            self._cache[word] = self._lemma(word)
        return self._cache[word]

    def _lemma(self, word: str) -> str:
        if self._simplemma is not None:
            try:
                if self.language in CAPITALISED_NOUNS:  # "strand" is a verb's form, "Strand" the beach
                    return str(self._simplemma.lemmatize(word.capitalize(), lang=self.language)).lower()
                return str(self._simplemma.lemmatize(word, lang=self.language)).lower()
            except (ValueError, KeyError):
                pass
        return _suffix_lemma(word) if self.language == "en" else word


IRREGULAR_PLURALS = {
    "buses": "bus",
    "children": "child",
    "men": "man",
    "women": "woman",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "leaves": "leaf",
    "knives": "knife",
    "wolves": "wolf",
    "shelves": "shelf",
    "skis": "ski",
}


def _suffix_lemma(word: str) -> str:
    """A plural-stripping fallback for English."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "ous")):
        return word[:-1]
    return word


def word_tokens(text: str) -> list[str]:
    """The lowercase words and numbers of ``text``, without punctuation."""
    return [t.lower() for t in TOKEN.findall(text) if t[0].isalnum()]
