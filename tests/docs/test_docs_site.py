"""The documentation: the MkDocs site builds in strict mode, README/CHANGELOG links resolve, and every
`descry ...` command shown in a bash block parses against the real CLI."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

import descry.cli

try:  # typer >= 0.2x parses with its own copy of click; older ones use click itself
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# `[text](target)` and `[text](target "title")`; images too. Reference-style links are not used.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```(\w*)\s*$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}

# Command lines that are documented on purpose but cannot be parsed here; keep this list short and
# say why.
SKIP: dict[str, str] = {
    "git clone <this repository's URL> descry && cd descry": "a placeholder with an apostrophe; runs no descry",
}


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def markdown_links(path: Path) -> list[str]:
    """Link targets outside fenced code blocks and inline code."""
    targets: list[str] = []
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            targets += LINK.findall(re.sub(r"`[^`]*`", "", line))
    return targets


def heading_anchors(path: Path) -> set[str]:
    from markdown.extensions.toc import slugify

    anchors: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            text = re.sub(r"[`*_]", "", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)))
            anchors.add(slugify(text, "-"))
    return anchors


@pytest.mark.parametrize("name", ["README.md", "CHANGELOG.md"])
def test_relative_links_resolve(name: str) -> None:
    source = ROOT / name
    checked = 0
    for target in markdown_links(source):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s), mailto: not checked offline; same-page anchors
        path_part, _, anchor = target.partition("#")
        resolved = (source.parent / path_part).resolve()
        assert resolved.exists(), f"{name}: link {target!r} points to a missing file"
        assert ROOT in resolved.parents or resolved == ROOT, f"{name}: link {target!r} leaves the repository"
        if anchor and resolved.suffix == ".md":
            assert anchor in heading_anchors(resolved), f"{name}: {target!r}: no heading with that anchor"
        checked += 1
    if name == "README.md":
        assert checked >= 5, "the README should link to the documentation pages"


def bash_command_lines(path: Path) -> list[tuple[int, str]]:
    """Logical lines (backslash continuations joined) of ```bash blocks, with their first line number."""
    lines: list[tuple[int, str]] = []
    fenced: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = FENCE.match(line.strip())
        if fence:
            fenced = None if fenced is not None else fence.group(1)
            pending = None
            continue
        if fenced != "bash":
            continue
        start, text = pending if pending else (number, "")
        text += line.rstrip()
        if text.endswith("\\"):
            pending = (start, text[:-1] + " ")
            continue
        pending = None
        lines.append((start, text.strip()))
    return lines


def descry_invocations(line: str) -> list[list[str]]:
    """The argument lists of every simple command in a shell line that runs `descry`."""
    if not re.search(r"(^|[\s;&|=])descry(\s|$)", line):
        return []
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in SHELL_OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    found = []
    for words in commands:
        while words and ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]  # `DESCRY_X=1 descry ...`
        if words and words[0] == "descry":
            found.append(words[1:])
    return found


def parse_with_cli(args: list[str]) -> None:
    """Parse like the real `descry` would, without running anything; raises click.ClickException."""
    command = typer.main.get_command(descry.cli.app)
    ctx = None
    name = "descry"
    while hasattr(command, "list_commands"):  # a group: descry, descry jobs
        if not args or args[0].startswith("-"):
            raise click.ClickException(f"expected a {name} subcommand, got {args[:1]}")
        ctx = click.Context(command, info_name=name, parent=ctx)
        name, args = args[0], args[1:]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise click.ClickException(f"no such command {name!r} in {ctx.command_path!r}")
        command = sub
    with command.make_context(name, list(args), parent=ctx, resilient_parsing=False):
        pass


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in doc_files():
        for number, line in bash_command_lines(path):
            if line in SKIP:
                continue
            try:
                invocations = descry_invocations(line)
            except ValueError as exc:  # unbalanced quotes
                pytest.fail(f"{path.relative_to(ROOT)}:{number}: cannot split {line!r}: {exc}")
            for args in invocations:
                found.append((f"{path.relative_to(ROOT)}:{number}: {line}", args))
    return found


def test_documented_commands_parse() -> None:
    commands = documented_commands()
    assert len(commands) >= 40, f"only {len(commands)} descry commands found: is the parser broken?"
    readme = [where for where, _ in commands if where.startswith("README.md")]
    assert len(readme) >= 8, readme
    failures = []
    for where, args in commands:
        try:
            parse_with_cli(args)
        except click.ClickException as exc:
            failures.append(f"{where}\n    -> {exc.format_message()}")
    assert not failures, "documented commands the CLI rejects:\n" + "\n".join(failures)


def test_parser_rejects_what_the_cli_rejects() -> None:
    """The check above would catch a renamed option, a removed command or a bad value."""
    parse_with_cli(["caption", "./photos", "-f", "json", "-o", "./meta"])
    for bad in (
        ["caption", "./photos", "--no-such-option"],
        ["caption", "./photos", "--batch-size", "0"],
        ["caption"],
        ["no-such-command"],
        ["jobs", "frobnicate", "JOB_ID"],
    ):
        with pytest.raises(click.ClickException):
            parse_with_cli(bad)
    assert descry_invocations("DESCRY_X=1 descry batch ./p --sink xmp && curl x | descry models") == [
        ["batch", "./p", "--sink", "xmp"],
        ["models"],
    ]
