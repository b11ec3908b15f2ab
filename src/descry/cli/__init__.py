"""The command line: the typer app and its commands, one module per command group."""

from __future__ import annotations

import typer

from descry.cli import batch, bench, caption, jobs, models, pull, serve


def build_app() -> typer.Typer:
    """The `descry` command with every command registered (worker first: the help lists them in this order)."""
    root = typer.Typer(
        help="descry: caption and enrich images with vision-language models.",
        epilog="Documentation: docs/ (mkdocs serve) and README.md in the project.",
        no_args_is_help=True,
    )
    root.add_typer(jobs.jobs_app, name="jobs")
    root.command()(jobs.worker)
    for command in (caption.caption, models.models, pull.pull, serve.serve, bench.bench, batch.batch):
        root.command()(command)
    return root


app = build_app()


def main() -> None:
    app()
