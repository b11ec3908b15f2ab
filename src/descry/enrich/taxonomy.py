"""The tag taxonomy: categories and their keywords, loaded from YAML and matched on lemmas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from descry.config import TagSettings
from descry.enrich.words import word_tokens
from descry.errors import ConfigError


@dataclass(frozen=True)
class Taxonomy:
    """Categories and their keywords, both as lemma sequences."""

    categories: dict[str, tuple[tuple[str, ...], ...]]

    @staticmethod
    def read(path: Path | None) -> dict[str, list[str]]:
        """The raw ``category: [keywords]`` mapping of a YAML file (the default one when None)."""
        where = str(path) if path else "the default taxonomy"
        try:
            if path is None:
                text = resources.files("descry.enrich").joinpath("taxonomy.yaml").read_text("utf-8")
            else:
                text = Path(path).read_text("utf-8")
            data = yaml.safe_load(text) or {}
        except FileNotFoundError as exc:
            raise ConfigError(
                f"taxonomy file {where} does not exist", hint="fix DESCRY_TAGS__TAXONOMY_PATH or unset it"
            ) from exc
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"cannot read taxonomy file {where}: {exc}",
                hint="it must be UTF-8 YAML mapping categories to keyword lists, e.g. 'sports: [ball]'",
            ) from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(w, str | int) for w in v)
            for k, v in data.items()
        ):
            raise ConfigError(
                f"taxonomy file {where} is not a mapping of category names to keyword lists",
                hint="write it as e.g. 'sports: [ball, stadium]' with one category per line",
            )
        return {str(k): [str(w) for w in v] for k, v in data.items()}

    @classmethod
    def load(cls, settings: TagSettings, lemma: Callable[[str], str]) -> Taxonomy:
        """The default taxonomy, extended or replaced by ``settings.taxonomy_path``. The default is English:
        captions in other languages are matched against ``taxonomy_path`` only (its keywords in their language)."""
        raw: dict[str, list[str]] = {}
        english = settings.language.split("-")[0].lower() == "en"
        if english and (settings.taxonomy_path is None or settings.taxonomy_mode == "extend"):
            raw = cls.read(None)
        if settings.taxonomy_path is not None:
            for name, words in cls.read(settings.taxonomy_path).items():
                raw[name] = [*raw.get(name, []), *words]
        categories: dict[str, tuple[tuple[str, ...], ...]] = {}
        for name, keywords in raw.items():
            seqs = {tuple(lemma(w) for w in word_tokens(k)) for k in keywords}
            categories[name.strip().lower()] = tuple(sorted(s for s in seqs if s))
        return cls(categories)

    def match(self, lemmas: list[str]) -> dict[str, list[str]]:
        """Category → the keywords that matched, in category order."""
        found: dict[str, list[str]] = {}
        for name, keywords in self.categories.items():
            hits = [" ".join(k) for k in keywords if _contains(lemmas, k)]
            if hits:
                found[name] = hits
        return found


def _contains(seq: list[str], sub: tuple[str, ...]) -> bool:
    size = len(sub)
    return any(tuple(seq[i : i + size]) == sub for i in range(len(seq) - size + 1))
