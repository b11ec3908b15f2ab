"""Caption checks: each detector on captions that have the problem and on ones that do not."""

from __future__ import annotations

import pytest

from descry.enrich.quality import SEVERITY, Problem, clean, judge, severity

GOOD = [
    "A dog running along a sandy beach with a red ball in its mouth.",
    "a man riding a horse on a beach",  # BLIP style: no full stop, still complete
    "Two people walk past a shop window at night, their reflections visible in the glass.",
]


def problems(text: str, **kw: object) -> set[Problem]:
    return set(judge(text, **{"finish_reason": "stop", "min_words": 5, "language": "en", **kw}))  # type: ignore[arg-type]


@pytest.mark.parametrize("text", GOOD)
def test_good_captions_pass(text: str) -> None:
    assert judge(text, finish_reason="stop", min_words=5, language="en") == []


@pytest.mark.parametrize("text", ["", "   ", "\n\t", None])
def test_empty(text: str) -> None:
    assert judge(text, finish_reason="stop", min_words=5, language="en") == [Problem.empty]  # type: ignore[arg-type]


def test_too_short_counts_words() -> None:
    assert problems("a dog") == {Problem.too_short}
    assert problems("a dog on grass", min_words=4) == set()
    assert problems("a dog", min_words=0) == set()


def test_cut_off_by_finish_reason() -> None:
    assert Problem.cut_off in problems("A dog running along the beach.", finish_reason="length")


@pytest.mark.parametrize(
    "text",
    [
        "A man sitting on a bench next to a",
        "A cat sleeping on a sofa with",
        "A red car parked on the street,",
    ],
)
def test_cut_off_by_dangling_end(text: str) -> None:
    assert Problem.cut_off in problems(text)


@pytest.mark.parametrize("text", ["a dog on a beach", "A red car parked on the street", "people at a market"])
def test_captions_without_full_stop_are_not_cut_off(text: str) -> None:
    assert Problem.cut_off not in problems(text, min_words=0)


@pytest.mark.parametrize(
    "text",
    [
        "a dog a dog a dog a dog a dog",
        "the the the cat sat on a mat",
        "A cat on the sofa on the sofa on the sofa.",
        "A man in a hat. A man in a hat. The end of the day.",
        "a car with a car on a car with a car on a car with a car on the road",
    ],
)
def test_repetitive(text: str) -> None:
    assert Problem.repetitive in problems(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with identifying people in images.",
        "I cannot describe this image.",
        "As an AI language model, I do not see images, but here is a guess.",
        "Unfortunately, I am unable to view the picture.",
        "No image was provided.",
        "N/A",
    ],
)
def test_refusal(text: str) -> None:
    assert Problem.refusal in problems(text)


@pytest.mark.parametrize(
    "text",
    [
        "This image shows a red car parked on a quiet street.",
        "The image depicts a red car parked on a quiet street.",
        "Here is a caption: A red car parked on a quiet street.",
        "In this image, we can see a red car parked on a quiet street.",
        "Sure! Here's a description of the image: a red car parked on a quiet street.",
    ],
)
def test_preamble_is_found_and_cleaned(text: str) -> None:
    assert problems(text) == {Problem.preamble}
    cleaned = clean(text)
    assert judge(cleaned, finish_reason="stop", min_words=5, language="en") == []
    assert cleaned.lower().startswith("a red car")


@pytest.mark.parametrize(
    "text",
    [
        "**A red car** parked on a quiet street.",
        "# Caption\nA red car parked on a quiet street.",
        "- a red car\n- a quiet street\n- a lamp post",
        "1. A red car\n2. A quiet street with trees",
        "A `red car` parked on a quiet street.",
    ],
)
def test_markdown(text: str) -> None:
    assert Problem.markdown in problems(text)


def test_clean_removes_emphasis_and_headers_but_keeps_lists() -> None:
    assert clean("**A red car** parked on a *quiet* street.") == "A red car parked on a quiet street."
    assert (
        clean("# Caption\nA red car parked on a quiet street.")
        == "Caption A red car parked on a quiet street."
    )
    listed = clean("- a red car\n- a quiet street")
    assert listed.splitlines() == ["- a red car", "- a quiet street"]


def test_clean_strips_quotes_spaces_and_blip_artefacts() -> None:
    assert clean('  "A dog  on a   beach."  ') == "A dog on a beach."
    assert clean("arafed man riding a wave on a surfboard") == "man riding a wave on a surfboard"
    assert clean("") == ""


@pytest.mark.parametrize(
    "text",
    [
        "Ein roter Wagen steht auf der Straße vor einem Haus mit dem Garten.",
        "Un coche rojo aparcado en la calle frente a una casa con los árboles.",
        "Une voiture rouge garée dans la rue devant une maison avec des arbres.",
    ],
)
def test_wrong_language(text: str) -> None:
    assert Problem.wrong_language in problems(text)
    assert Problem.wrong_language not in problems(text, language=None)


def test_language_check_is_cautious() -> None:
    assert Problem.wrong_language not in problems("man riding skis down snowy slope near trees")
    assert Problem.wrong_language not in problems("A Volkswagen Golf in Berlin, Germany, next to the Spree.")
    german = "Ein roter Wagen steht auf der Straße vor einem Haus mit dem Garten."
    assert Problem.wrong_language not in problems(german, language="de")
    assert Problem.wrong_language not in problems(german, language="xx")


def test_problems_are_sorted_by_severity() -> None:
    found = judge("Sorry, I", finish_reason="length", min_words=5, language="en")
    assert found == sorted(found, key=lambda p: -SEVERITY[p])
    assert found[0] is Problem.refusal
    assert {Problem.cut_off, Problem.too_short} <= set(found)


def test_severity_sums_and_every_problem_has_one() -> None:
    assert set(SEVERITY) == set(Problem)
    assert severity([]) == 0
    assert severity(["too_short", Problem.cut_off]) == SEVERITY[Problem.too_short] + SEVERITY[Problem.cut_off]


@pytest.mark.parametrize("text", ["🚗" * 500, "x" * 100_000, "\x00\x01\x02", "ü" * 3 + " ." * 400])
def test_weird_input_does_not_raise(text: str) -> None:
    assert isinstance(judge(text, finish_reason="stop", min_words=5, language="en"), list)
    assert isinstance(clean(text), str)


def test_tables_and_json_answers_are_flagged_and_tables_keep_their_lines() -> None:
    from descry.enrich.quality import Problem, clean, judge

    table = "Objects:\n| object | colour |\n|---|---|\n| square | red |"
    assert Problem.markdown in judge(clean(table), min_words=1)
    assert "\n" in clean(table)
    assert Problem.markdown in judge('{"caption": "a dog", "tags": ["dog"]}', min_words=1)
    assert Problem.markdown in judge('["a dog", "a cat"]', min_words=1)
    assert Problem.markdown not in judge("A dog {sits} on a mat next to a cat.", min_words=1)
