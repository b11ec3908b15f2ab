"""The canonical /v1 API over the scripted EchoBackend (captions are 'WxH prompt')."""

from __future__ import annotations

import json
from pathlib import Path

from descry.config import Settings
from tests.api_helpers import PROMPT, api_settings, jpeg, serve, upload
from tests.conftest import image_bytes


async def test_caption_upload_has_every_field(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post(
            "/v1/caption",
            files={"file": ("photo.jpg", jpeg((64, 48)), "image/jpeg")},
            data={"prompt": PROMPT, "max_tokens": "20", "params": '{"temperature": 0.5}'},
            headers={"X-Request-ID": "req-123"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["x-request-id"] == "req-123" == body["request_id"]
    assert body["caption"].startswith("64x48 ")
    assert body["name"] == "photo.jpg"
    assert body["source"] == body["model"] == "echo" and body["backend"] == "echo"
    assert body["params"]["max_new_tokens"] == 20 and body["params"]["temperature"] == 0.5
    assert body["image"] == {"width": 64, "height": 48, "format": "JPEG"}
    assert body["attempts"] >= 1
    assert body["reasoning_trace"] and all(isinstance(line, str) for line in body["reasoning_trace"])
    assert all(set(tag) == {"name", "source", "score"} for tag in body["tags"])
    assert body["enhanced"] is False and body["original_caption"] is None
    assert {"decode_s", "caption_s", "total_s"} <= set(body["timings"])
    assert body["delivery"] is None


async def test_caption_json_path_inside_an_allowed_root(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.png").write_bytes(image_bytes("PNG", (30, 20)))
    config = api_settings(settings, sources={"allowed_roots": [root]})
    async with serve(config) as (client, _app):
        ok = await client.post(
            "/v1/caption", json={"path": str(root / "a.png"), "prompt": PROMPT, "tags": False}
        )
        outside = await client.post("/v1/caption", json={"path": str(tmp_path / "elsewhere.png")})
        escape = await client.post("/v1/caption", json={"path": "../../etc/passwd"})
        missing = await client.post("/v1/caption", json={"path": str(root / "missing.png")})
    assert ok.status_code == 200, ok.text
    assert ok.json()["caption"].startswith("30x20") and ok.json()["tags"] == []
    assert ok.json()["image"]["format"] == "PNG"
    assert (outside.status_code, outside.json()["error"]["code"]) == (403, "forbidden_source")
    assert (escape.status_code, escape.json()["error"]["code"]) == (403, "forbidden_source")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_caption_json_source_errors(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        paths_off = await client.post("/v1/caption", json={"path": "/etc/hostname"})
        private_url = await client.post("/v1/caption", json={"url": "http://127.0.0.1:9/x.jpg"})
        two = await client.post("/v1/caption", json={"url": "http://example.com/a.jpg", "path": "/a.jpg"})
        none = await client.post("/v1/caption", json={"prompt": "x"})
        unknown = await client.post("/v1/caption", json={"url": "http://example.com/a.jpg", "colour": "red"})
        bad_json = await client.post(
            "/v1/caption", content=b"{nope", headers={"content-type": "application/json"}
        )
        text = await client.post("/v1/caption", content=b"hi", headers={"content-type": "text/plain"})
    assert paths_off.status_code == 403 and "ALLOWED_ROOTS" in paths_off.json()["error"]["message"]
    assert private_url.status_code == 403 and private_url.json()["error"]["code"] == "forbidden_source"
    for response in (two, none, unknown, bad_json):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_error"
        assert response.json()["request_id"] == response.headers["x-request-id"]
    assert "exactly one of url, s3_uri or path" in two.json()["error"]["message"]
    assert text.status_code == 415 and text.json()["error"]["code"] == "unsupported_media_type"


async def test_form_field_errors(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        files = {"file": ("a.jpg", jpeg(), "image/jpeg")}
        bad_detail = await client.post("/v1/caption", files=files, data={"detail": "enormous"})
        bad_params = await client.post("/v1/caption", files=files, data={"params": "{"})
        unknown = await client.post("/v1/caption", files=files, data={"colour": "red"})
        no_file = await client.post("/v1/caption", data={"prompt": "x"}, files={"other": ("a.jpg", b"x")})
        text_file = await client.post("/v1/caption", data={"file": "not a file"})
    assert bad_detail.status_code == 422 and "detail" in bad_detail.json()["error"]["message"]
    assert bad_params.status_code == 400 and "params" in bad_params.json()["error"]["message"]
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]["message"]
    assert no_file.status_code == 400
    assert text_file.status_code == 400 and "must be a file" in text_file.json()["error"]["message"]


async def test_batch_multipart_keeps_order_and_isolates_errors(settings: Settings) -> None:
    sizes = [(40, 30), (50, 35), (13, 20), (70, 45)]  # width 13 makes the echo model fail
    files = [upload(f"img{i}.jpg", jpeg(size)) for i, size in enumerate(sizes)]
    files.insert(2, upload("notes.jpg", b"just some text, not an image", "image/jpeg"))
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post(
            "/v1/caption/batch", files=files, data={"prompt": PROMPT, "tags": "false"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["succeeded"], body["failed"]) == (5, 3, 2)
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["name"] for r in results] == ["img0.jpg", "img1.jpg", "notes.jpg", "img2.jpg", "img3.jpg"]
    assert [r["ok"] for r in results] == [True, True, False, False, True]
    assert results[2]["error"]["code"] == "unsupported_format"
    assert results[3]["error"]["code"] == "model_error"
    for result, (w, h) in zip(
        [results[0], results[1], results[4]], [sizes[0], sizes[1], sizes[3]], strict=True
    ):
        assert result["result"]["caption"].startswith(f"{w}x{h} ")
        assert result["result"]["tags"] == []


async def test_batch_json_items_have_their_own_options(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    for i, size in enumerate([(20, 10), (30, 15)]):
        (root / f"{i}.jpg").write_bytes(jpeg(size))
    config = api_settings(settings, sources={"allowed_roots": [root]})
    items = [
        {"path": str(root / "0.jpg"), "prompt": "first prompt here for the test"},
        {"path": str(root / "1.jpg"), "prompt": "second prompt here for the test", "asset_id": "A-2"},
        {"path": str(root / "nope.jpg")},
    ]
    async with serve(config) as (client, _app):
        response = await client.post("/v1/caption/batch", json={"items": items})
        empty = await client.post("/v1/caption/batch", json={"items": []})
    body = response.json()
    assert [r["ok"] for r in body["results"]] == [True, True, False]
    assert body["results"][0]["result"]["caption"] == "20x10 first prompt here for the test"
    assert body["results"][1]["result"]["caption"] == "30x15 second prompt here for the test"
    assert body["results"][1]["result"]["asset_id"] == "A-2"
    assert body["results"][2]["error"]["code"] == "not_found"
    assert empty.status_code == 422


async def test_batch_file_count_limit(settings: Settings) -> None:
    config = api_settings(settings, security={"max_files": 2, "client_rate": 0.0})
    async with serve(config) as (client, _app):
        response = await client.post(
            "/v1/caption/batch", files=[upload(f"{i}.jpg", jpeg()) for i in range(3)]
        )
        none = await client.post("/v1/caption/batch", data={"prompt": "x"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert "MAX_FILES" in response.json()["error"]["message"]
    assert none.status_code == 400


async def test_sinks_named_by_the_request_receive_the_result(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    config = api_settings(settings, sinks={"jsonl_path": out})
    async with serve(config) as (client, _app):
        response = await client.post(
            "/v1/caption",
            files={"file": ("a.jpg", jpeg(), "image/jpeg")},
            data={"prompt": PROMPT, "sinks": "jsonl", "asset_id": "asset-9"},
        )
        unknown = await client.post(
            "/v1/caption", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, data={"sinks": "carrier-pigeon"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["delivery"] == {"jsonl": None}
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["asset_id"] == "asset-9"
    assert unknown.status_code == 400 and "jsonl" in unknown.json()["error"]["message"]


async def test_models_lists_the_loaded_model_and_presets(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        body = (await client.get("/v1/models")).json()
    assert body["model"]["name"] == "echo" and body["model"]["status"] == "ready"
    assert body["model"]["capabilities"]["tasks"] == ["<CAPTION>"]
    names = [p["name"] for p in body["presets"]]
    assert "florence-2-base" in names and sum(p["default"] for p in body["presets"]) == 1


async def test_openapi_documents_both_bodies(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        schema = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    content = schema["paths"]["/v1/caption"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    components = schema["components"]["schemas"]
    assert {"CaptionUpload", "CaptionSource", "BatchUpload", "BatchSources", "GenerationParams"} <= set(
        components
    )
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_the_one_rule_on_the_caption_routes(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "defaults.jsonl"
    config = api_settings(settings, sinks={"jsonl_path": out, "default": ["jsonl"]})
    image = {"file": ("a.jpg", jpeg(), "image/jpeg")}
    async with serve(config) as (client, _app):
        plain = await client.post("/v1/caption", files=image)
        assert plain.status_code == 200 and not plain.json()["delivery"]
        assert not out.exists()  # a plain upload never starts writing files on the server
        named = await client.post("/v1/caption", files=image, data={"asset_id": "A-1"})
        assert named.json()["delivery"] == {"jsonl": None}
        batch = await client.post(
            "/v1/caption/batch", files=[upload("a.jpg", jpeg()), upload("b.jpg", jpeg())], data={"sinks": "log,nope"}
        )
    assert batch.status_code == 400 and batch.json()["error"]["code"] == "invalid_input"
    assert len(out.read_text().splitlines()) == 1
