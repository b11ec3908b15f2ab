"""`descry bench`: baseline vs engine vs HTTP on architecture-exact random models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from descry.cli.console import stderr_console
from descry.cli.options import fail
from descry.errors import DescryError


def bench(
    profile: Annotated[
        str,
        typer.Option(help="tiny (seconds), cpu (Florence-2-base, BLIP-base, SmolVLM-256M) or gpu (Qwen2.5-VL-7B)"),
    ] = "cpu",
    out: Annotated[Path | None, typer.Option(help="folder for <profile>-<date>.json")] = Path("benchmarks/results"),
    images: Annotated[
        int | None, typer.Option(min=1, help="images per model for the engine (default: profile's)")
    ] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="only these models of the profile")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=256, help="engine batch size override")] = None,
    tokens: Annotated[
        int | None, typer.Option(min=1, max=512, help="output tokens per image (default: profile's)")
    ] = None,
    baseline_images: Annotated[
        int | None, typer.Option(min=1, help="images per model for the baseline (default: profile's)")
    ] = None,
    process_images: Annotated[
        int | None, typer.Option(min=0, help="JPEGs for the whole-process `descry caption` run (0: skip it)")
    ] = None,
    results_md: Annotated[Path | None, typer.Option("--results-md", help="also update this RESULTS.md")] = None,
    http: Annotated[bool, typer.Option("--http/--no-http", help="measure the HTTP server too")] = True,
    phi3v_code: Annotated[Path | None, typer.Option(help="folder with the Phi-3-V remote code files")] = None,
    workdir: Annotated[Path | None, typer.Option(help="where the random-weight models are written")] = None,
) -> None:
    """Benchmark baseline vs engine vs HTTP on architecture-exact random models, plus JPEG decoding."""
    from descry.bench import get_profile, markdown, run_profile, update_results

    err = stderr_console()
    try:
        chosen = get_profile(
            profile,
            images=images,
            models=model,
            batch_size=batch_size,
            tokens=tokens,
            baseline_images=baseline_images,
            process_images=process_images,
        )
        result = run_profile(
            chosen,
            out_dir=out,
            workdir=workdir,
            remote_code=[phi3v_code] if phi3v_code else None,
            http=http,
            log=lambda line: err.print(line, markup=False, highlight=False),
        )
    except DescryError as exc:
        raise fail(exc) from exc
    print(markdown(result))
    if results_md is not None:
        update_results(results_md, result)
    if "written_to" in result:
        err.print(f"results written to {escape(str(result['written_to']))}")
