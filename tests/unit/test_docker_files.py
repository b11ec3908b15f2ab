"""The container files, checked as far as a machine without Docker can: parse and cross-check."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from descry.config import LEGACY_ENV, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.gpu"]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pip_installs(path: Path) -> list[str]:
    return [
        cmd.strip()
        for op, args in _instructions(path)
        if op == "RUN"
        for cmd in args.split("&&")
        if "pip install" in cmd
    ]


def _extras(pip_cmd: str) -> set[str]:
    match = re.search(r"\"?\.\[([^\]]+)\]\"?", pip_cmd)
    return set(match.group(1).split(",")) if match else set()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker/compose.yaml").read_text())


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_pip_install_uses_the_constraints(name: str) -> None:
    installs = _pip_installs(ROOT / name)
    assert len(installs) == 2, installs
    for cmd in installs:
        assert "-c constraints.txt" in cmd, cmd
        assert "torchvision" not in cmd


@pytest.mark.parametrize("name", DOCKERFILES)
def test_torch_is_installed_first_and_pinned_like_the_constraints(name: str) -> None:
    torch_cmd, project_cmd = _pip_installs(ROOT / name)
    pinned = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    args = dict(a.split("=", 1) for op, a in _instructions(ROOT / name) if op == "ARG" and "=" in a)
    assert "torch==${TORCH_VERSION}" in torch_cmd and "--index-url" in torch_cmd and "--no-deps" in torch_cmd
    assert args["TORCH_VERSION"] == pinned["torch"]
    assert "download.pytorch.org/whl/" in args["TORCH_INDEX"]
    assert _extras(project_cmd), project_cmd


def test_both_images_install_the_extras_the_docs_name() -> None:
    cpu, gpu = (_extras(_pip_installs(ROOT / name)[1]) for name in DOCKERFILES)
    assert cpu == gpu == {"all"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    install_page = (ROOT / "docs" / "getting-started.md").read_text()
    for extra in cpu:
        assert extra in extras
        assert f"`{extra}`" in install_page, f"docs/getting-started.md does not document the {extra!r} extra"
    assert "torchvision" not in str(extras["all"])


def test_cpu_image_base() -> None:
    ops = _instructions(ROOT / "docker/Dockerfile")
    assert ("FROM", "python:3.11-slim") in ops
    assert any(op == "ARG" and a == "TORCH_INDEX=https://download.pytorch.org/whl/cpu" for op, a in ops)


def test_gpu_image_base_is_cuda() -> None:
    ops = _instructions(ROOT / "docker/Dockerfile.gpu")
    base = next(a for op, a in ops if op == "ARG" and a.startswith("CUDA_IMAGE="))
    assert base.startswith("CUDA_IMAGE=nvidia/cuda:") and "runtime" in base
    assert any(op == "ARG" and "/whl/cu" in a for op, a in ops)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_service_runs_unprivileged_on_8000_with_a_health_check(name: str) -> None:
    ops = _instructions(ROOT / name)
    users = [a for op, a in ops if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert ("EXPOSE", "8000") in ops
    health = [a for op, a in ops if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/health" in health[0] and "8000" in health[0]
    cmd = [a for op, a in ops if op == "CMD"][-1]
    assert cmd.startswith('["descry", "serve"') and '"0.0.0.0"' in cmd
    env = " ".join(a for op, a in ops if op == "ENV")
    assert "HF_HOME=/home/descry/.cache/huggingface" in env


def test_compose_runs_the_gpu_image_with_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    service = compose["services"]["descry"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert (ROOT / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert any(str(p).endswith(":8000") for p in service["ports"])


def test_compose_shares_the_host_model_cache_and_reads_dotenv(compose: dict[str, Any]) -> None:
    service = compose["services"]["descry"]
    cache = "/home/descry/.cache/huggingface"
    assert service["environment"]["HF_HOME"] == cache
    mounts = {v.rsplit(":", 1)[1]: v.rsplit(":", 1)[0] for v in service["volumes"]}
    assert ".cache/huggingface" in mounts[cache]
    assert mounts["/home/descry/data"] in compose["volumes"]
    env_files = [e["path"] if isinstance(e, dict) else e for e in service["env_file"]]
    assert (ROOT / "docker" / env_files[0]).resolve() == ROOT / ".env"


def _field_exists(model: type, path: list[str]) -> bool:
    fields = model.model_fields  # type: ignore[attr-defined]
    head = path[0].lower()
    if head not in fields:
        return False
    if len(path) == 1:
        return True
    inner = fields[head].annotation
    return hasattr(inner, "model_fields") and _field_exists(inner, path[1:])


def test_env_example_names_only_real_settings_and_every_legacy_alias() -> None:
    text = (ROOT / ".env.example").read_text()
    names = re.findall(r"^#?\s*(DESCRY_[A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert len(names) >= 20
    for name in names:
        assert _field_exists(Settings, name.removeprefix("DESCRY_").split("__")), name
    for legacy in [*LEGACY_ENV, "VLM_LOAD_8BIT"]:
        assert re.search(rf"^#\s*{legacy}=", text, flags=re.MULTILINE), legacy


def test_docker_build_context_keeps_secrets_and_data_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "data", ".git"} <= set(ignored)
