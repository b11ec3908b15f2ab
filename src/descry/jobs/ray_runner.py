"""The batch enrichment as a Ray Data pipeline, for batches beyond one machine.

    refs ─► read + decode (CPU tasks) ─► enrich (actor pool: one model per replica) ─► driver

Reading and decoding are spread over the cluster's CPUs (``read_bytes`` under the local user's
``TrustPolicy``, then ``decode``); each replica holds one ``Descry``, loads the model once and hands
it the decoded images through ``Descry.enrich_decoded``, the library's one documented second way in.
Results are delivered by the driver. A bad image becomes a row with an error, never a crashed
pipeline. Settings travel to the workers as a pickled object: nothing on a worker reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from descry.backends.registry import resolve_spec
from descry.config import Settings
from descry.core import Descry
from descry.engine.pipeline import target_pixels_for
from descry.errors import ConfigError, DescryError, ModelError, describe_error
from descry.imaging import DecodedImage, decode
from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError, SourceKind
from descry.sources import TrustPolicy, read_bytes

ResultHook = Callable[[ImageRef, Enrichment | None, ItemError | None], None]
DECODE_BATCH = 16
# a fraction of a CPU per decode task: Ray fuses stages with equal resources, and decoding must stay a
# stage of its own, spread over the cluster's CPUs, rather than run inside the model replicas
DECODE_CPUS = 0.5

_REF_FIELDS = ("kind", "name", "uri")
_ERROR_FIELDS = ("error_code", "error_message")


@dataclass
class RayOptions:
    """Where and how wide the Ray pipeline runs; None means work it out from the cluster."""

    address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float | None = None
    num_cpus: int | None = None


def _require_ray() -> Any:
    from descry.errors import require

    require("pyarrow", "ray")
    require("ray.data", "ray")
    return require("ray", "ray")


def decoded_schema(pa: Any) -> Any:
    """Rows between the decode and the enrich stage: raw RGB pixels, or the reason there are none."""
    return pa.schema(
        [
            ("kind", pa.string()),
            ("name", pa.string()),
            ("uri", pa.string()),
            ("pixels", pa.large_binary()),
            ("pixel_width", pa.int64()),
            ("pixel_height", pa.int64()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("format", pa.string()),
            ("sha256", pa.string()),
            ("nbytes", pa.int64()),
            ("error_code", pa.string()),
            ("error_message", pa.string()),
        ]
    )


def result_schema(pa: Any) -> Any:
    """Rows the driver receives: the Enrichment as JSON, or the error."""
    return pa.schema(
        [
            ("kind", pa.string()),
            ("name", pa.string()),
            ("uri", pa.string()),
            ("enrichment", pa.string()),
            ("error_code", pa.string()),
            ("error_message", pa.string()),
        ]
    )


def target_pixels(settings: Settings) -> int:
    """How many pixels decoding keeps for the configured model (the Engine's rule, without loading it)."""
    return target_pixels_for(resolve_spec(settings.model, test_mode=settings.test_mode))


def _decode_row(row: dict[str, Any], settings: Settings, pixels: int) -> dict[str, Any]:
    ref = row_ref(row)
    out: dict[str, Any] = {key: row[key] for key in _REF_FIELDS}
    try:
        data = read_bytes(ref, settings.sources, settings.limits, policy=TrustPolicy.local(settings.sources))
        image = decode(data, ref.name, settings.limits, pixels)
    except Exception as exc:  # one unreadable image becomes an error row
        code, message = describe_error(exc)
        return {**out, "error_code": code, "error_message": message}
    return {
        **out,
        "pixels": image.image.tobytes(),
        "pixel_width": image.image.width,
        "pixel_height": image.image.height,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "sha256": image.sha256,
        "nbytes": image.nbytes,
    }


def decode_batch(batch: Any, *, settings: Settings, pixels: int) -> Any:
    """Ray Data task: read and decode a batch of refs (a pyarrow Table) into RGB pixels or errors."""
    import pyarrow as pa

    rows = [_decode_row(row, settings, pixels) for row in batch.to_pylist()]
    return pa.Table.from_pylist(rows, schema=decoded_schema(pa))


def row_ref(row: dict[str, Any]) -> ImageRef:
    return ImageRef(kind=SourceKind(row["kind"]), name=row["name"], uri=row["uri"])


def _decoded_image(row: dict[str, Any]) -> DecodedImage:
    from PIL import Image

    image = Image.frombytes("RGB", (row["pixel_width"], row["pixel_height"]), row["pixels"])
    return DecodedImage(
        image, row["name"], row["width"], row["height"], row["format"], row["sha256"], row["nbytes"]
    )


class EnrichReplica:
    """Ray Data actor: one Descry, its model loaded once, driven by one event loop of its own."""

    def __init__(self, settings: Settings, request: CaptionRequest) -> None:
        self.request = request
        self.loop = asyncio.new_event_loop()
        self.load_error: Exception | None = None
        self.descry = Descry(settings, autostart=False)
        try:
            self.loop.run_until_complete(self.descry.start())
        except Exception as exc:  # raised from the first batch, where Ray keeps the original error
            self.load_error = exc

    def __del__(self) -> None:
        """Ray Data drops the actor's UDF when the pool shuts down: close the Descry and the loop."""
        loop = getattr(self, "loop", None)
        if loop is None or loop.is_closed():
            return
        try:
            loop.run_until_complete(self.descry.close())
        finally:
            loop.close()

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist()
        if self.load_error is not None and any(not row["error_code"] for row in rows):
            raise self.load_error
        results = self.loop.run_until_complete(self._all(rows))
        return pa.Table.from_pylist(results, schema=result_schema(pa))

    async def _all(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._one(row) for row in rows)))

    async def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {key: row[key] for key in (*_REF_FIELDS, *_ERROR_FIELDS)}
        if row["error_code"]:
            return out
        try:
            result = await self.descry.enrich_decoded(row_ref(row), _decoded_image(row), self.request, sinks=[])
        except Exception as exc:  # each image fails alone
            code, message = describe_error(exc)
            return {**out, "error_code": code, "error_message": message}
        assert result.enrichment is not None
        return {**out, "enrichment": result.enrichment.model_dump_json()}


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Ray connected for the block: the cluster at ``options.address``, else a local one started here.

    Enter it on the main thread (Ray installs signal handlers there); a session this call did not
    start is left running.
    """
    ray = _require_ray()
    started = _connect(ray, options)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _connect(ray: Any, options: RayOptions) -> bool:
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if options.address:
            ray.init(address=options.address, **quiet)
        else:
            ray.init(num_cpus=options.num_cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray cluster"
        raise ConfigError(
            f"cannot start or join {where}: {exc}",
            hint="check --address (e.g. ray://head:10001 or auto) and that `ray status` works here",
        ) from exc
    return True


def placement(resources: dict[str, float], options: RayOptions) -> tuple[int, float]:
    """How many model replicas, and GPUs for each, the cluster can hold (fails fast instead of hanging)."""
    gpus_total = float(resources.get("GPU", 0))
    cpus_total = float(resources.get("CPU", 0))
    gpus = options.gpus_per_replica if options.gpus_per_replica is not None else (1.0 if gpus_total else 0.0)
    if gpus > 0 and gpus_total < gpus:
        raise ConfigError(
            f"each replica asks for {gpus:g} GPU but the cluster has {gpus_total:g}",
            hint="use --gpus-per-replica 0 to run on CPUs, or add GPU nodes",
        )
    replicas = options.replicas or (max(1, int(gpus_total // gpus)) if gpus else 1)
    if gpus and replicas * gpus > gpus_total:
        raise ConfigError(
            f"{replicas} replicas of {gpus:g} GPU need {replicas * gpus:g} GPUs;"
            f" the cluster has {gpus_total:g}",
            hint="lower --replicas or --gpus-per-replica",
        )
    if not gpus and replicas + 1 > cpus_total:
        raise ConfigError(
            f"{replicas} CPU replicas plus decoding need {replicas + 1} CPUs; the cluster has {cpus_total:g}",
            hint="lower --replicas (one CPU stays free for reading and decoding)",
        )
    return replicas, gpus


def build_dataset(
    ray: Any, settings: Settings, request: CaptionRequest, refs: list[ImageRef], replicas: int, gpus: float
) -> Any:
    """The lazy pipeline: refs → decode tasks → enrich actors."""
    items = [{"kind": ref.kind.value, "name": ref.name, "uri": ref.uri} for ref in refs]
    per_call = settings.model.batch_size_for("cuda" if gpus else "cpu") * (settings.batching.inflight_batches + 1)
    resources = {"num_gpus": gpus} if gpus else {"num_cpus": 1}
    return (
        ray.data.from_items(items)
        .map_batches(
            decode_batch,
            batch_size=DECODE_BATCH,
            batch_format="pyarrow",
            fn_kwargs={"settings": settings, "pixels": target_pixels(settings)},
            num_cpus=DECODE_CPUS,
        )
        .map_batches(
            EnrichReplica,
            batch_size=per_call,
            batch_format="pyarrow",
            fn_constructor_args=(settings, request),
            compute=ray.data.ActorPoolStrategy(size=replicas),
            **resources,
        )
    )


def _pipeline_error(exc: BaseException) -> DescryError:
    """The DescryError behind a Ray failure (e.g. a model that cannot load in the actors), or a ModelError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)  # Ray's task and actor errors carry the original here
        if isinstance(current, DescryError) and not isinstance(inner, BaseException):
            return current
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return ModelError(f"the Ray pipeline failed: {exc}", hint="see the Ray worker logs (`ray logs`)")


def enrich_with_ray(
    settings: Settings,
    request: CaptionRequest,
    refs: list[ImageRef],
    options: RayOptions,
    on_result: ResultHook,
) -> None:
    """Run the pipeline inside a ``ray_session`` and hand each result to ``on_result`` on this thread."""
    if not refs:
        return
    ray = _require_ray()
    replicas, gpus = placement(ray.cluster_resources(), options)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.raise_original_map_exception = True  # keep e.g. ModelNotFound from the actors for the user
    dataset = build_dataset(ray, settings, request, refs, replicas, gpus)
    try:
        for row in dataset.iter_rows():
            _emit(row, on_result)
    except Exception as exc:
        raise _pipeline_error(exc) from exc


def _emit(row: dict[str, Any], on_result: ResultHook) -> None:
    ref = row_ref(row)
    if row["error_code"]:
        error = ItemError(name=ref.name, code=row["error_code"], message=row["error_message"] or "")
        on_result(ref, None, error)
    else:
        on_result(ref, Enrichment.model_validate_json(row["enrichment"]), None)
