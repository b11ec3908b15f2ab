"""What huggingface_hub and transformers may print, as the faces set it at start-up."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

pytest.importorskip("transformers")

from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars  # noqa: E402
from transformers.utils import logging as tf_logging  # noqa: E402

from descry.backends.hub import quiet_output  # noqa: E402


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """quiet_output changes process-wide switches: put them back for the other tests."""
    hub_logger, tf_logger = logging.getLogger("huggingface_hub"), logging.getLogger("transformers")
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate) for lg in (hub_logger, tf_logger)]
    tf_progress = tf_logging.is_progress_bar_enabled()
    for logger in (hub_logger, tf_logger):  # the libraries' defaults, whatever ran before
        logger.setLevel(logging.WARNING)
    yield
    for logger, level, handlers, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
    enable_progress_bars()
    if tf_progress:
        tf_logging.enable_progress_bar()


def test_off_a_terminal_only_errors_and_no_progress_bars() -> None:
    quiet_output(terminal=False)
    hub_logger = logging.getLogger("huggingface_hub.utils._http")  # where "Retrying in 8s" comes from
    assert not hub_logger.isEnabledFor(logging.WARNING) and hub_logger.isEnabledFor(logging.ERROR)
    assert not logging.getLogger("transformers.modeling_utils").isEnabledFor(logging.WARNING)
    assert are_progress_bars_disabled() and not tf_logging.is_progress_bar_enabled()


def test_on_a_terminal_warnings_stay() -> None:
    quiet_output(terminal=True)
    assert logging.getLogger("huggingface_hub.utils._http").isEnabledFor(logging.WARNING)


def test_with_a_root_handler_each_record_is_printed_once(capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    counter = Count(logging.WARNING)
    root.addHandler(counter)
    try:
        quiet_output(terminal=True, propagate=True)
        capfd.readouterr()
        logging.getLogger("huggingface_hub.utils._http").warning("hub says hi")
        logging.getLogger("transformers.modeling_utils").warning("transformers says hi")
    finally:
        root.removeHandler(counter)
    assert seen == ["hub says hi", "transformers says hi"]  # through the face's root handler
    assert "says hi" not in capfd.readouterr().err  # and not also through the libraries' own handlers
