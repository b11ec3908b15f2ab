"""What the CLI writes on the terminal: errors printed verbatim, a quiet stderr when piped, the run summary,
the models list."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from descry.errors import DescryError

if TYPE_CHECKING:
    from descry.runner import RunSummary

MAX_NOTES = 50


def stderr_console() -> Console:
    """The console for progress, errors and summaries; it writes to whatever sys.stderr is at the time."""
    return Console(stderr=True)


def print_error(console: Console, exc: DescryError) -> None:
    """``error: <message>``, escaped: hints like ``pip install 'descry[xmp]'`` must survive Rich markup."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)  # one line, even piped


class _Collect(logging.Handler):
    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.notes.append(f"{record.name}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a badly formatted record must not break the run
            self.handleError(record)


class _HeldStderr(io.TextIOBase):
    """Stands in for sys.stderr during a piped run: keeps what is written, for the summary."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", None) or "utf-8"

    def lines(self) -> list[str]:
        """What was written, one entry a line; progress bars (redrawn with carriage returns) are left out."""
        lines = "".join(self.parts).split("\n")
        return [line.strip() for line in lines if line.strip() and "\r" not in line]


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Keeps a piped run's stderr to the one JSON summary line.

    While the run goes, Python warnings, WARNING+ log records that reach the root logger, and text written to
    sys.stderr (libraries' progress bars are dropped) are collected for the summary's ``warnings`` instead.
    If the run stops with an error, all of it is written to stderr after all."""
    notes: list[str] = []
    handler = _Collect(notes)
    root = logging.getLogger()
    held = _HeldStderr(sys.stderr)
    root.addHandler(handler)
    sys.stderr = held
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                yield notes
            finally:
                notes.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    except BaseException:
        sys.stderr = held.real
        held.real.write("".join(held.parts))
        for note in dict.fromkeys(notes):
            held.real.write(f"warning: {note}\n")
        raise
    finally:
        sys.stderr = held.real
        root.removeHandler(handler)
        notes.extend(held.lines())
        unique = list(dict.fromkeys(notes))
        notes[:] = unique[:MAX_NOTES] + ([f"... and {len(unique) - MAX_NOTES} more"] if len(unique) > MAX_NOTES else [])


MODEL_COLUMNS = (
    ("preset", "name"),
    ("model id", "model_id"),
    ("backend", "backend"),
    ("size", "size"),
    ("CPU", "cpu"),
    ("licence", "licence"),
    ("good at", "notes"),
)


def print_models(console: Console, rows: Sequence[dict[str, object]]) -> None:
    """The presets: a table on a terminal wide enough for every model id, otherwise one plain line each.

    Model ids are never cut or wrapped: they are what ``--model`` takes."""
    lines = [
        tuple(
            f"{row['name']}{' (default)' if row.get('default') else ''}" if key == "name" else str(row.get(key, ""))
            for _, key in MODEL_COLUMNS
        )
        for row in rows
    ]
    print_table(console, tuple(title for title, _ in MODEL_COLUMNS), lines)


def print_table(console: Console, header: Sequence[str], lines: Sequence[Sequence[str]]) -> None:
    """Rows under a header: a table when the terminal fits every column but the last whole, else plain lines."""
    fixed = len(header) - 1
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(fixed)]
    # the table needs the fixed columns whole plus some room for the last (borders: 3 per column + 1)
    if console.is_terminal and console.width >= sum(widths) + 3 * len(header) + 1 + 20:
        table = Table()
        for i, title in enumerate(header):
            table.add_column(title, no_wrap=i < fixed, min_width=widths[i] if i < fixed else None)
        for line in lines:
            table.add_row(*(escape(cell) for cell in line))
        console.print(table)
        return
    for line in [header, *lines]:
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[fixed]
        console.print(text.rstrip(), markup=False, highlight=False, soft_wrap=True)


def progress_rate(summary: RunSummary | None, now: float | None = None) -> str:
    """The progress bar's rate: the summary's images/s, on the summary's clock, for the run so far."""
    if summary is None or not summary.ok:
        return ""
    return format_rate(summary.rate_so_far(now))


def format_rate(rate: float) -> str:
    return f"{rate:.2f} img/s"


def report_summary(err: Console, summary: RunSummary, notes: list[str] | None = None) -> None:
    """The run's summary: one JSON line when stderr is piped, a sentence and a failures table on a terminal."""
    if not err.is_terminal:
        data = {
            "total": summary.total,
            "ok": summary.ok,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "seconds": round(summary.seconds, 3),
            "failures": [f.model_dump() for f in summary.failures],
        }
        if notes:
            data["warnings"] = notes
        err.file.write(json.dumps(data) + "\n")
        err.file.flush()
        return
    err.print(
        f"{summary.ok} captioned, {summary.failed} failed, {summary.skipped} skipped "
        f"in {summary.seconds:.1f}s ({format_rate(summary.images_per_second)})"
    )
    if summary.failures:
        table = Table("image", "error", "message", title="failures")
        for failure in summary.failures:
            table.add_row(escape(failure.name), escape(failure.code), escape(failure.message))
        err.print(table)
