"""What arithmetic this CPU runs natively, and so which precision ``--dtype auto`` picks on a CPU.

bfloat16 halves the bytes every weight read moves and, on CPUs with AMX or AVX512-BF16, doubles
(AVX512-BF16) or multiplies (AMX) the matrix throughput. Elsewhere torch emulates bf16 by converting
to fp32 and back, which is slower than fp32, so ``auto`` stays on fp32 there. The check reads the
CPU's flags (``/proc/cpuinfo`` on Linux); where they cannot be read, ``auto`` is fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# cpuinfo flag -> the name a person knows it by, in order of preference
BF16_FEATURES = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's instruction-set flags, as the kernel lists them."""

    flags: frozenset[str]
    source: str = "/proc/cpuinfo"

    @property
    def bf16_feature(self) -> str | None:
        """The feature that makes bf16 native here (``AMX``, ``AVX512-BF16``), or None."""
        return next((name for flag, name in BF16_FEATURES.items() if flag in self.flags), None)


@dataclass(frozen=True)
class CpuPrecision:
    """The dtype ``auto`` means on this CPU, and why (for the start line and ``/health``)."""

    dtype: str
    reason: str


def parse_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` of the first processor in a /proc/cpuinfo text (x86); empty when there are none."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


def read_features(cpuinfo: Path) -> CpuFeatures:
    """The flags listed in a cpuinfo file; none when it cannot be read (not Linux, or a sandbox hides it)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return CpuFeatures(frozenset(), source="unavailable")
    return CpuFeatures(parse_flags(text), source=str(cpuinfo))


def detect() -> CpuFeatures:
    """This machine's CPU flags (the test suite replaces this to pin its fp32 references)."""
    return read_features(CPUINFO)


def auto_precision(features: CpuFeatures) -> CpuPrecision:
    """bfloat16 where the CPU has AMX or AVX512-BF16, float32 elsewhere (bf16 would be emulated)."""
    feature = features.bf16_feature
    if feature:
        return CpuPrecision("bfloat16", f"the CPU has {feature}")
    if features.source == "unavailable":
        return CpuPrecision("float32", "the CPU's features could not be read")
    return CpuPrecision("float32", "the CPU has no AMX or AVX512-BF16, so bfloat16 would be emulated")


def cpu_precision(requested: str, *, quantization: str = "none", features: CpuFeatures | None = None) -> CpuPrecision:
    """The dtype a CPU model runs in: the one asked for, or for ``auto`` the CPU's native choice.

    Dynamic int8 (``--quantization 8bit``) quantizes fp32 Linear layers, so it keeps fp32 under ``auto``.
    """
    if requested != "auto":
        return CpuPrecision(requested, "asked for")
    if quantization != "none":
        return CpuPrecision("float32", f"{quantization} quantization runs on float32 weights")
    return auto_precision(features or detect())
