"""What the CLI shows a newcomer: verbatim install hints, helped options, a docs pointer, whole model ids,
one rate for the progress bar and the summary, and a quiet stderr when piped."""

from __future__ import annotations

import io
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

import descry.bench
import descry.cli.batch
import descry.cli.caption
import descry.cli.jobs
from descry.backends.registry import PRESETS
from descry.cli import app
from descry.cli.console import collected_warnings, format_rate, print_models, progress_rate
from descry.errors import MissingDependency
from descry.runner import RunSummary

runner = CliRunner()


def flat(text: str) -> str:
    """The text with Rich's line wrapping undone."""
    return " ".join(text.split())


def walk(command: Any, path: tuple[str, ...] = ("descry",)) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += walk(sub, (*path, name))
    return found


def test_every_option_of_every_command_has_help() -> None:
    commands = walk(get_command(app))
    assert {"caption", "batch", "serve", "models", "bench", "worker", "jobs"} <= {p[-1] for p, _ in commands}
    assert {"list", "show", "cancel", "results"} <= {p[-1] for p, _ in commands if p[:2] == ("descry", "jobs")}
    missing = [
        f"{' '.join(path)} {'/'.join(param.opts)}"
        for path, command in commands
        for param in command.params
        if param.param_type_name in ("option", "argument") and not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, f"options without help text: {missing}"


def test_top_level_help_points_to_the_documentation() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    text = flat(result.output)
    assert "docs/" in text and "README.md" in text


def _raise(exc: Exception) -> Callable[..., Any]:
    def boom(*_: object, **__: object) -> Any:
        raise exc

    return boom


XMP = MissingDependency("pyexiv2", "xmp")


def _break_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descry.cli.caption, "build_settings", _raise(XMP))
    monkeypatch.setattr(descry.cli.batch, "build_settings", _raise(XMP))


def _break_job_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descry.cli.jobs, "Settings", _raise(XMP))


def _break_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descry.bench, "get_profile", _raise(XMP))


def _no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)


@pytest.mark.parametrize(
    ("args", "breaker", "extra"),
    [
        (["caption", "photo.jpg"], _break_settings, "xmp"),
        (["batch", "photos"], _break_settings, "xmp"),
        (["bench", "--profile", "tiny"], _break_bench, "xmp"),
        (["serve"], _no_uvicorn, "server"),
        (["worker"], _break_job_settings, "xmp"),
        (["jobs", "list"], _break_job_settings, "xmp"),
        (["jobs", "show", "abc"], _break_job_settings, "xmp"),
        (["jobs", "cancel", "abc"], _break_job_settings, "xmp"),
        (["jobs", "results", "abc"], _break_job_settings, "xmp"),
    ],
)
def test_install_hints_are_printed_verbatim(
    args: list[str], breaker: Callable[[pytest.MonkeyPatch], None], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    breaker(monkeypatch)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert f"[{extra}]" in text, text
    hint = MissingDependency("x", extra).hint or ""
    assert flat(hint) in text


def test_progress_bar_and_summary_report_the_same_rate() -> None:
    summary = RunSummary(total=10, ok=6, failed=1, started=100.0)
    assert progress_rate(RunSummary(started=100.0), now=101.0) == ""  # nothing captioned yet: no rate
    end = 112.5
    bar = progress_rate(summary, now=end)  # what the bar shows after the last image
    summary.seconds = end - summary.started  # what the runner records at the end of the same run
    assert summary.rate_so_far(end) == pytest.approx(summary.images_per_second)
    assert bar == format_rate(summary.images_per_second)
    assert summary.images_per_second == pytest.approx(6 / 12.5)


@pytest.mark.parametrize("width", [40, 80, 200])
@pytest.mark.parametrize("terminal", [True, False])
def test_model_ids_are_never_cut(width: int, terminal: bool) -> None:
    rows = [
        {"name": name, "model_id": spec.model_id, "backend": spec.backend, "default": False, "notes": "some notes"}
        for name, spec in PRESETS.items()
    ]
    console = Console(force_terminal=terminal, width=width, record=True, file=io.StringIO())
    print_models(console, rows)
    text = console.export_text()
    for row in rows:
        assert str(row["model_id"]) in text
        assert str(row["name"]) in text


def test_models_command_piped_with_narrow_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    result = runner.invoke(app, ["models"], env={"COLUMNS": "40"})
    assert result.exit_code == 0
    for spec in PRESETS.values():
        assert str(spec.model_id) in result.output


def test_a_piped_run_collects_warnings_instead_of_writing_them(capsys: pytest.CaptureFixture[str]) -> None:
    with collected_warnings() as notes:
        logging.getLogger("descry.enrich.tags").warning("tagging failed, returning no tags: %s", "boom")
        logging.getLogger("descry.engine").info("model loaded")  # below WARNING: neither shown nor kept
        warnings.warn("a library complains", UserWarning, stacklevel=1)
        sys.stderr.write("\rLoading weights:   0%|   | 0/53\rLoading weights: 100%|###| 53/53\n")
        sys.stderr.write("a line some library printed\n")
    assert capsys.readouterr().err == ""
    assert any("tagging failed" in note and "boom" in note for note in notes)
    assert any("a library complains" in note for note in notes)
    assert any("a line some library printed" in note for note in notes)
    assert not any("Loading weights" in note or "model loaded" in note for note in notes)


def test_a_run_that_stops_with_an_error_still_shows_what_was_held(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), collected_warnings():
        logging.getLogger("descry.x").warning("why it went wrong")
        sys.stderr.write("error: the model cannot load\n")
        raise RuntimeError
    err = capsys.readouterr().err
    assert "the model cannot load" in err and "why it went wrong" in err
