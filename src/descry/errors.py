"""descry's one error tree. Every message says what to do about it.

    DescryError                      code                  http
    ├── ConfigError                  config_error          500
    │   └── MissingDependency        missing_dependency    500
    ├── InputError                   invalid_input         400
    │   ├── ImageTooLarge            image_too_large       413
    │   ├── PayloadTooLarge          payload_too_large     413
    │   ├── UnsupportedFormat        unsupported_format    415
    │   ├── CorruptImage             corrupt_image         400
    │   ├── SourceNotFound           not_found             404
    │   ├── SourceForbidden          forbidden_source      403
    │   └── SourceFetchError         fetch_failed          400
    ├── CapabilityError              unsupported_request   422
    ├── ModelError                   model_error           500
    │   ├── ModelNotFound            model_not_found       500
    │   ├── ModelNotReady            model_not_ready       503
    │   │   └── ModelLoadFailed      model_load_failed     503
    │   ├── OutOfMemory              out_of_memory         503
    │   ├── EmptyCaption             empty_caption         500
    │   └── RemoteModelError         remote_model_error    502
    ├── Overloaded                   overloaded            429
    │   └── RateLimited              rate_limited          429
    ├── NotFound                     not_found             404
    │   └── UnknownModel             model_not_found       404
    ├── AuthError                    unauthorized          401
    │   └── Forbidden                forbidden             403
    ├── OutputError                  output_error          500
    └── DeliveryError                delivery_failed       502

    (any other exception)            internal_error        500

The HTTP mapping lives in ``descry.api.errors``; the codes above are stable and
machine-readable; ``retryable`` tells workers whether trying again can help.
``describe_error`` gives any exception its code and message, for summaries, results and jobs;
``require`` imports an optional package or raises MissingDependency with the install command.
"""

from __future__ import annotations

import importlib
from typing import Any


class DescryError(Exception):
    """Base of every error descry raises on purpose."""

    code = "descry_error"
    retryable = False

    def __init__(self, message: str, *, hint: str | None = None, source: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.source}: {self.message}" if self.source else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": str(self)}
        if self.source:
            body["source"] = self.source
        return body


class ConfigError(DescryError):
    code = "config_error"


class MissingDependency(ConfigError):
    """A Python package is not installed: names it and the pip command that adds it.

    ``extra`` is the descry extra that brings the package (``hf``, ``server``, ...); without one the
    package itself is installed (a package a model's own code needs, e.g. ``num2words``).
    """

    code = "missing_dependency"

    def __init__(self, package: str, extra: str | None = None, *, needed_by: str = "this feature") -> None:
        self.package = package
        self.extra = extra
        target = f'-e ".[{extra}]"' if extra else package
        install = f"pip install -c constraints.txt {target}"
        super().__init__(
            f"{needed_by} needs the Python package '{package}', which is not installed",
            hint=f"install it with: {install}",
        )


def require(module: str, extra: str = "hf") -> Any:
    """Import a heavy optional module, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) and exc.name else module
        raise MissingDependency(missing.split(".")[0], extra) from exc


class InputError(DescryError):
    code = "invalid_input"


class ImageTooLarge(InputError):
    code = "image_too_large"


class PayloadTooLarge(InputError):
    code = "payload_too_large"


class UnsupportedFormat(InputError):
    code = "unsupported_format"


class CorruptImage(InputError):
    code = "corrupt_image"


class SourceNotFound(InputError):
    code = "not_found"


class SourceForbidden(InputError):
    code = "forbidden_source"


class SourceFetchError(InputError):
    code = "fetch_failed"
    retryable = True


class CapabilityError(DescryError):
    code = "unsupported_request"


class ModelError(DescryError):
    code = "model_error"


class ModelNotFound(ModelError):
    code = "model_not_found"


class ModelNotReady(ModelError):
    code = "model_not_ready"
    retryable = True


class ModelLoadFailed(ModelNotReady):
    """The model could not load, so nothing will be served until the cause is fixed and the server restarts."""

    code = "model_load_failed"
    retryable = False


class OutOfMemory(ModelError):
    code = "out_of_memory"
    retryable = True


class EmptyCaption(ModelError):
    """The final caption is empty, blank or holds no word: a failure, so nothing is written for the image."""

    code = "empty_caption"


class RemoteModelError(ModelError):
    code = "remote_model_error"
    retryable = True


class Overloaded(DescryError):
    code = "overloaded"
    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: str | None) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class RateLimited(Overloaded):
    code = "rate_limited"


class NotFound(DescryError):
    code = "not_found"


class UnknownModel(NotFound):
    """A request named a model this server does not serve (the OpenAI- and Ollama-compatible routes)."""

    code = "model_not_found"


class AuthError(DescryError):
    code = "unauthorized"


class Forbidden(AuthError):
    code = "forbidden"


class OutputError(DescryError):
    code = "output_error"


class DeliveryError(DescryError):
    code = "delivery_failed"
    retryable = True


def describe_error(exc: BaseException) -> tuple[str, str]:
    """A stable code and a message for any error, for summaries and results."""
    if isinstance(exc, DescryError):
        return exc.code, str(exc)
    return "internal_error", f"{type(exc).__name__}: {exc}"
