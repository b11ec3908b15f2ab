"""What a face lets its callers read: the one trust decision, made once where the face is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from descry.config import SourceSettings
from descry.errors import SourceForbidden

PathTrust = Literal["anywhere", "roots", "none"]


@dataclass(frozen=True)
class TrustPolicy:
    """Which sources may be read: server paths (anywhere, only inside ``roots``, or none), URLs,
    private URLs (those resolving to loopback, LAN or link-local addresses) and S3."""

    paths: PathTrust = "anywhere"
    roots: tuple[Path, ...] = ()
    urls: bool = True
    private_urls: bool = False
    url_allowlist: tuple[str, ...] = ()
    s3: bool = True

    @classmethod
    def local(cls, sources: SourceSettings) -> TrustPolicy:
        """The user at this machine (CLI, batch, Ray): any file they can read; URLs guarded as configured."""
        return cls._configured(sources, "anywhere")

    @classmethod
    def network(cls, sources: SourceSettings) -> TrustPolicy:
        """Callers over the network (API, API-submitted jobs): server paths only inside the allowed roots."""
        return cls._configured(sources, "roots")

    @classmethod
    def _configured(cls, sources: SourceSettings, paths: PathTrust) -> TrustPolicy:
        return cls(
            paths=paths,
            roots=tuple(sources.allowed_roots),
            private_urls=sources.allow_private_urls,
            url_allowlist=tuple(sources.url_allowlist),
        )

    def fetch_settings(self, sources: SourceSettings) -> SourceSettings:
        """The source settings a fetch runs under: this policy's URL rules over the configured timeouts."""
        return sources.model_copy(
            update={"allow_private_urls": self.private_urls, "url_allowlist": list(self.url_allowlist)}
        )

    def allow_url(self, url: str) -> None:
        if not self.urls:
            raise SourceForbidden("reading URLs is disabled here", source=url)

    def allow_s3(self, uri: str) -> None:
        if not self.s3:
            raise SourceForbidden("reading S3 objects is disabled here", source=uri)

    def forbid_paths(self, raw: str) -> None:
        """Raise when this policy reads no server paths at all."""
        if self.paths == "none":
            raise SourceForbidden("reading server paths is disabled here", source=raw)
