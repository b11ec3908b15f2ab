"""The CPU-feature check behind ``--dtype auto`` on a CPU: both branches, on simulated /proc/cpuinfo texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from descry import cpu_features
from descry.cpu_features import CpuFeatures, auto_precision, cpu_precision, parse_flags, read_features

# abridged /proc/cpuinfo of three real CPUs
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC 9454\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd sve bf16\n"


def features(text: str) -> CpuFeatures:
    return CpuFeatures(parse_flags(text))


@pytest.mark.parametrize(
    ("text", "feature"), [(SAPPHIRE_RAPIDS, "AMX"), (ZEN4, "AVX512-BF16")]
)
def test_native_bf16_cpus_get_bfloat16(text: str, feature: str) -> None:
    chosen = auto_precision(features(text))
    assert chosen.dtype == "bfloat16"
    assert feature in chosen.reason


@pytest.mark.parametrize("text", [SKYLAKE, GRAVITON, ""])
def test_other_cpus_stay_on_float32(text: str) -> None:
    """AVX512 without BF16 (and CPUs descry does not check, e.g. Arm's bf16) would emulate bf16: fp32."""
    assert auto_precision(features(text)).dtype == "float32"


def test_flags_are_read_from_the_file(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4 + "\n" + ZEN4.replace("processor\t: 0", "processor\t: 1"))
    read = read_features(info)
    assert {"avx512f", "avx512_bf16"} <= read.flags and read.bf16_feature == "AVX512-BF16"
    assert read_features(tmp_path / "missing").source == "unavailable"
    unreadable = auto_precision(read_features(tmp_path / "missing"))
    assert unreadable.dtype == "float32" and "could not be read" in unreadable.reason


def test_an_explicit_dtype_overrides_auto() -> None:
    native = features(ZEN4)
    assert cpu_precision("float32", features=native).dtype == "float32"
    assert cpu_precision("bfloat16", features=features(SKYLAKE)).dtype == "bfloat16"
    assert cpu_precision("auto", features=native).dtype == "bfloat16"


def test_int8_quantization_keeps_float32_weights() -> None:
    assert cpu_precision("auto", quantization="8bit", features=features(SAPPHIRE_RAPIDS)).dtype == "float32"


def test_detect_reads_this_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(SAPPHIRE_RAPIDS)
    monkeypatch.setattr(cpu_features, "CPUINFO", info)
    assert cpu_features.detect().bf16_feature == "AMX"
