from descry.backends.base import Capabilities
from descry.config import Settings
from descry.engine.pipeline import Engine
from tests.fakes.echo_backend import EchoBackend


def test_batch_size_follows_the_device_unless_set(settings: Settings) -> None:
    backend = EchoBackend()
    engine = Engine(settings, backend=backend)
    assert engine.batch_size == 8
    backend.device = "cuda:0"
    assert engine.batch_size == 64
    backend.device = "remote"
    assert engine.batch_size == settings.model.max_concurrency
    fixed = settings.model_copy(update={"model": settings.model.model_copy(update={"batch_size": 3})})
    assert Engine(fixed, backend=backend).batch_size == 3


def test_a_backend_without_batching_gets_batches_of_one(settings: Settings) -> None:
    class Single(EchoBackend):
        capabilities = Capabilities(batching=False)

    assert Engine(settings, backend=Single()).batch_size == 1
