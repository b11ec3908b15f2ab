"""The Hugging Face hub as descry meets it: is a model cached, can the hub be reached, and how its libraries talk.

transformers asks the hub for every file it loads and, when the hub cannot be reached, retries for
about 25 seconds before it says so. ``reachable`` asks once, with a short timeout and no retries, so
a model that is neither on disk nor reachable fails at once; ``quiet_output`` is for the faces (the
CLI, the server factory), which decide at start-up what huggingface_hub and transformers may print.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descry.errors import ConfigError, DescryError, ModelNotFound, require

PROBE_TIMEOUT_S = 3.0
PROBE_TTL_S = 60.0

_probes: dict[str, tuple[float, bool]] = {}


def _hub(module: str = "") -> Any:
    return require(f"huggingface_hub{'.' if module else ''}{module}")


def endpoint() -> str:
    """The hub's address (``HF_ENDPOINT``, else huggingface.co)."""
    return str(_hub("constants").ENDPOINT)


def offline() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``): nothing may be downloaded."""
    return bool(_hub("constants").is_offline_mode())


def cached(model_id: str, revision: str | None = None) -> bool:
    """Whether the local cache holds the model's config.json (so it was downloaded before)."""
    try:
        found = _hub().try_to_load_from_cache(model_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def reachable() -> bool:
    """One HEAD request to the hub, no retries; the answer is kept for a minute."""
    url = endpoint()
    now = time.monotonic()
    seen = _probes.get(url)
    if seen is not None and now - seen[0] < PROBE_TTL_S:
        return seen[1]
    try:
        _hub("utils").get_session().head(url, timeout=PROBE_TIMEOUT_S)
        answer = True
    except Exception:  # noqa: BLE001 - any failure to get an answer (DNS, refused, timeout, TLS) is "unreachable"
        answer = False
    _probes[url] = (now, answer)
    return answer


def quiet_output(*, terminal: bool, propagate: bool = False) -> None:
    """What huggingface_hub and transformers print; a face calls this once at start-up.

    Off a terminal (a pipe, a log file, a container) only their errors get through: no download
    retries, no "Loading weights" progress bars. ``propagate``: the face has its own root handler
    (the server's key=value log), so their own handlers are dropped and each record prints once.
    """
    hub_logging = _optional("huggingface_hub.utils.logging")
    if hub_logging is not None:
        if not terminal:
            hub_logging.set_verbosity_error()
            importlib.import_module("huggingface_hub.utils").disable_progress_bars()
        if propagate:
            logging.getLogger("huggingface_hub").handlers.clear()
            hub_logging.enable_propagation()
    tf_logging = _optional("transformers.utils.logging")
    if tf_logging is not None:
        if not terminal:
            tf_logging.set_verbosity_error()
            tf_logging.disable_progress_bar()
        if propagate:
            tf_logging.disable_default_handler()
            tf_logging.enable_propagation()


def _optional(module: str) -> Any:
    """The module, or None when its library is not installed (then there is nothing to quiet)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


# weights in formats transformers does not read, and folders of exports; left out of a pull
OTHER_FORMATS = ("*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.tflite", "*.ot", "*.mlmodel", "*.gguf", "*.ckpt")
OTHER_FOLDERS = ("onnx/", "openvino/", "coreml/", "original/", "flax/", "tf/")
TORCH_WEIGHTS = ("*.bin", "*.pt", "*.pth")


def choose_files(sizes: Mapping[str, int], *, all_files: bool = False) -> tuple[dict[str, int], dict[str, int]]:
    """The files of a repository a pull fetches, and those it leaves out.

    Left out: weights in formats transformers does not read (TF, Flax, ONNX, GGUF, ...), export folders,
    PyTorch pickles (``*.bin``) beside safetensors in the same folder, and Mistral's ``consolidated``
    copy beside the ``model-*`` shards.
    """
    if all_files:
        return dict(sizes), {}
    folders_with_safetensors = {_folder(name) for name in sizes if name.endswith(".safetensors")}
    folders_with_shards = {
        _folder(n) for n in sizes if n.rsplit("/", 1)[-1].startswith("model") and n.endswith(".safetensors")
    }

    def wanted(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(base, pattern) for pattern in OTHER_FORMATS) or name.startswith(OTHER_FOLDERS):
            return False
        if any(fnmatch.fnmatch(base, pattern) for pattern in TORCH_WEIGHTS):
            return _folder(name) not in folders_with_safetensors
        return not (base.startswith("consolidated") and _folder(name) in folders_with_shards)

    chosen = {name: size for name, size in sizes.items() if wanted(name)}
    return chosen, {name: size for name, size in sizes.items() if name not in chosen}


def _folder(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def cache_folder() -> Path:
    """Where the Hugging Face cache keeps models (HF_HUB_CACHE, else HF_HOME/hub)."""
    return Path(_hub("constants").HF_HUB_CACHE)


def snapshot_folder(model_id: str, commit: str) -> Path:
    """The cache's folder of one commit of a model."""
    return cache_folder() / f"models--{model_id.replace('/', '--')}" / "snapshots" / commit


def human_size(n: float) -> str:
    """Bytes as the hub writes them: 512 B, 3.4 MB, 4.3 GB (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@dataclass(frozen=True)
class RemoteModel:
    """What the hub lists for a model at one commit: the files a pull fetches and those it leaves out."""

    model_id: str
    commit: str
    files: dict[str, int]
    left_out: dict[str, int]
    gated: bool
    licence: str | None = None
    model_type: str | None = None

    @property
    def total(self) -> int:
        return sum(self.files.values())

    def missing(self) -> dict[str, int]:
        """The chosen files not yet in the local cache at this commit."""
        hub = _hub()
        return {
            name: size
            for name, size in self.files.items()
            if not isinstance(hub.try_to_load_from_cache(self.model_id, name, revision=self.commit), str)
        }


def remote_model(model_id: str, revision: str | None = None, *, all_files: bool = False) -> RemoteModel:
    """The model's file listing with sizes (one API call); hub failures become one-line descry errors."""
    try:
        info = _hub().HfApi().model_info(model_id, revision=revision, files_metadata=True)
    except Exception as exc:
        raise hub_error(exc, model_id, revision) from None
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    chosen, left_out = choose_files(sizes, all_files=all_files)
    card = info.card_data
    licence = getattr(card, "license", None) if card is not None else None
    model_type = (info.config or {}).get("model_type") if isinstance(info.config, dict) else None
    return RemoteModel(model_id, str(info.sha), chosen, left_out, bool(info.gated), licence, model_type)


def download(model: RemoteModel, revision: str | None = None) -> Path:
    """Fetch the model's chosen files into the Hugging Face cache (progress bars on a terminal); its snapshot folder.

    Files already cached are skipped; a connection that breaks mid-file is resumed with a Range request.
    """
    bars: list[Any] = []
    base: Any = _hub("utils.tqdm").tqdm

    class Bar(base):  # type: ignore[misc, valid-type]
        """huggingface_hub's bar, kept so that every bar is closed before the caller prints again."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)

    try:
        path = _hub().snapshot_download(
            model.model_id, revision=revision, allow_patterns=sorted(model.files), tqdm_class=Bar
        )
    except Exception as exc:
        raise hub_error(exc, model.model_id, revision) from None
    finally:
        for bar in bars:
            bar.close()
    return Path(path)


def login_hint(model_id: str) -> str:
    """How to get at a gated model: accept its licence on the model page, then log in here."""
    page = f"{endpoint().rstrip('/')}/{model_id}"
    if _hub().get_token():
        return (
            f"the account of your token has no access yet: open {page}, accept the licence with that account "
            "(some models wait for approval), or use another token (HF_TOKEN)"
        )
    return f"open {page} and accept the licence while signed in, then log in here: `hf auth login` or HF_TOKEN=<token>"


def hub_error(exc: BaseException, model_id: str, revision: str | None = None) -> DescryError:
    """A huggingface_hub failure as one descry error that says what to do."""
    if isinstance(exc, DescryError):
        return exc
    errors = _hub("errors")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.GatedRepoError) or (isinstance(exc, errors.HfHubHTTPError) and status == 403):
        return ConfigError(
            f"{model_id} is gated: its licence must be accepted before download", hint=login_hint(model_id)
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return ModelNotFound(f"{model_id} has no revision {revision!r} on {endpoint()}", hint="check --revision")
    if isinstance(exc, (errors.RepositoryNotFoundError, errors.HFValidationError)):
        return ModelNotFound(
            f"no model {model_id!r} on {endpoint()}",
            hint="check the id (owner/name, as on the model page) or pick a preset from `descry models`; "
            "a private model needs `hf auth login` or HF_TOKEN",
        )
    if offline() or isinstance(exc, errors.OfflineModeIsEnabled):
        return ConfigError(f"HF_HUB_OFFLINE=1 is set, so {model_id} cannot be downloaded", hint=OFFLINE_HINT)
    if isinstance(exc, errors.HfHubHTTPError):
        return ModelNotFound(
            f"the hub ({endpoint()}) answered HTTP {status} for {model_id}", hint="try again later; check HF_ENDPOINT"
        )
    if isinstance(exc, (OSError, *_transport_errors())):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ModelNotFound(
            f"could not download {model_id} from {endpoint()}: {first}",
            hint="check the network (or HF_ENDPOINT) and the free disk space, then run the same command again: "
            "files already downloaded are kept",
        )
    return ModelNotFound(f"could not download {model_id}: {type(exc).__name__}: {exc}".splitlines()[0])


OFFLINE_HINT = (
    "unset HF_HUB_OFFLINE (or set it to 0) where the hub can be reached; `descry models --local` lists the cache"
)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors (httpx2 in huggingface_hub 2.x, httpx before)."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        module = _optional(name)
        if module is not None and isinstance(getattr(module, "TransportError", None), type):
            found.append(module.TransportError)
    return tuple(found)


@dataclass(frozen=True)
class CachedModel:
    """A model repository in the local Hugging Face cache."""

    model_id: str
    size: int
    files: int
    refs: tuple[str, ...]
    path: Path
    last_used: float
    missing: int | None  # chosen files of the newest revision not on disk; None when no listing was kept


def cached_models() -> tuple[Path, list[CachedModel]]:
    """The cache folder and the models in it, largest first (nothing when there is no cache yet)."""
    hub = _hub()
    folder = cache_folder()
    try:
        info = hub.scan_cache_dir()
    except hub.CacheNotFound:
        return folder, []
    models = [
        CachedModel(
            repo.repo_id,
            repo.size_on_disk,
            repo.nb_files,
            tuple(sorted({ref for rev in repo.revisions for ref in rev.refs})),
            repo.repo_path,
            repo.last_accessed,
            _missing_files(repo),
        )
        for repo in info.repos
        if repo.repo_type == "model"
    ]
    return folder, sorted(models, key=lambda m: (-m.size, m.model_id))


def _missing_files(repo: Any) -> int | None:
    """How many files a pull would fetch that the newest revision lacks, from the listing a pull keeps."""
    if not repo.revisions:
        return None
    newest = max(repo.revisions, key=lambda rev: rev.last_modified)
    try:
        listing = _hub().get_cached_repo_tree(repo.repo_id, revision=newest.commit_hash)
    except Exception:  # noqa: BLE001 - no listing kept (files fetched one by one): completeness is unknown
        return None
    chosen, _ = choose_files({f.path: int(f.size or 0) for f in listing})
    present = {f.file_path.relative_to(newest.snapshot_path).as_posix() for f in newest.files}
    return sum(1 for name in chosen if name not in present)
