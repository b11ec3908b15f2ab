"""Faults: a model failing on some items, failing sinks, unwritable outputs, SIGTERM mid-batch."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from descry.config import Settings
from descry.errors import OutputError
from descry.fileio import atomic_write
from tests.security.conftest import ServerProcess, app_client
from tests.security.corpus import picture

READ_ONLY_DIR = Path("/sys/kernel")  # refuses new files even to root


def test_model_failing_on_some_items_fails_only_those(open_settings: Settings) -> None:
    widths = [20, 13, 30, 40, 13, 50]  # the EchoBackend fails any batch holding a width-13 image
    with app_client(open_settings) as client:
        files = [("files", (f"w{w}-{i}.png", picture("PNG", (w, 10)), "image/png")) for i, w in enumerate(widths)]
        response = client.post("/v1/caption/batch", files=files)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [r["ok"] for r in body["results"]] == [w != 13 for w in widths]
        assert (body["succeeded"], body["failed"]) == (4, 2)
        assert [r["index"] for r in body["results"]] == list(range(6))
        failed = [r for r in body["results"] if not r["ok"]]
        assert all(r["error"]["code"] and r["error"]["message"] for r in failed)

        single = client.post("/v1/caption", files={"file": ("w13.png", picture("PNG", (13, 10)), "image/png")})
        assert single.status_code == 500
        assert single.json()["error"]["code"] and "Traceback" not in single.text
        assert client.get("/health").json()["ok"] is True
        ok = client.post("/v1/caption", files={"file": ("ok.png", picture("PNG", (21, 10)), "image/png")})
        assert ok.status_code == 200


def test_a_failing_sink_does_not_fail_the_response(open_settings: Settings) -> None:
    sinks = open_settings.sinks.model_copy(update={"jsonl_path": READ_ONLY_DIR / "descry.jsonl"})
    settings = open_settings.model_copy(update={"sinks": sinks})
    with app_client(settings) as client:
        image = {"file": ("a.jpg", picture("JPEG", (32, 24)), "image/jpeg")}
        response = client.post("/v1/caption", files=image, data={"sinks": "jsonl,log", "asset_id": "A-1"})
        assert response.status_code == 200, response.text
        delivery = response.json()["delivery"]
        assert delivery["log"] is None
        assert delivery["jsonl"] and "descry.jsonl" in delivery["jsonl"]
        unknown = client.post("/v1/caption", files=image, data={"sinks": "nope"})
        assert unknown.status_code == 400
        assert unknown.json()["error"]["code"] == "invalid_input" and "log" in unknown.json()["error"]["hint"]
    assert not (READ_ONLY_DIR / "descry.jsonl").exists()


def test_read_only_output_folder_gives_a_clear_error_and_no_file() -> None:
    target = READ_ONLY_DIR / "descry-caption.txt"
    with pytest.raises(OutputError, match="read-only") as info:
        atomic_write(target, b"a caption\n")
    assert info.value.hint
    assert not target.exists()


@pytest.mark.parametrize(
    "err,words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"), (errno.EIO, "Input/output")]
)
def test_failing_disk_leaves_no_partial_file(
    err: int, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old caption\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr("descry.fileio.os.fsync", broken_fsync)
    with pytest.raises(OutputError, match=words):
        atomic_write(out / "keep.txt", b"new caption\n")
    with pytest.raises(OutputError, match=words):
        atomic_write(out / "new.txt", b"new caption\n")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "old caption\n"


def _status(base: str, task_id: str) -> dict[str, object]:
    response = httpx.get(f"{base}/async-batch-caption/status/{task_id}", timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _done(status: dict[str, object]) -> int:
    progress = status["progress"]
    assert isinstance(progress, dict)
    return int(progress["done"])


def test_sigterm_mid_batch_finishes_requests_and_resumes_the_batch(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    env = {
        "DESCRY_MODEL__BATCH_SIZE": 1,
        "DESCRY_SERVER__BATCH_CONCURRENCY": 1,
        "DESCRY_JOBS__CONCURRENCY": 1,
        "DESCRY_JOBS__DRAIN_SECONDS": 0.5,
        "DESCRY_AGENT__ENABLED": "false",
    }
    server = start_server(env, delay=0.25)
    count = 16
    files = [("files", (f"img{i:02d}.png", picture("PNG", (30 + i, 20)), "image/png")) for i in range(count)]
    submitted = httpx.post(f"{server.base}/async-batch-caption", files=files, timeout=10)
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + 20
    while _done(_status(server.base, task_id)) < 2:
        assert time.monotonic() < deadline, _status(server.base, task_id)
        time.sleep(0.1)

    in_flight: dict[str, httpx.Response] = {}

    def caption_during_shutdown() -> None:
        image = {"file": ("late.png", picture("PNG", (25, 25)), "image/png")}
        in_flight["response"] = httpx.post(f"{server.base}/v1/caption", files=image, timeout=30)

    thread = threading.Thread(target=caption_during_shutdown)
    thread.start()
    time.sleep(0.3)  # the request is queued behind the batch's images
    server.terminate()
    thread.join(30)
    assert in_flight["response"].status_code == 200, in_flight["response"].text


    restarted = start_server(env, data_dir=tmp_path / "data")
    resumed = _status(restarted.base, task_id)
    assert resumed["status"] in ("pending", "processing") and 2 <= _done(resumed) < count, resumed
    deadline = time.monotonic() + 30
    while (status := _status(restarted.base, task_id))["status"] != "completed":
        assert status["status"] in ("pending", "processing"), status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    results = status["result"]  # the BLIP service's list of {image_path, caption, tags}
    assert [r["image_path"] for r in results] == [f"img{i:02d}.png" for i in range(count)]
    assert all(r.get("caption") and not r.get("error") for r in results)
    restarted.terminate()
