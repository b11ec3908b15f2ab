"""Small modules and small functions: no module under src/descry over 400 lines, no function over 60."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "descry"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _functions(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to the last line) of every function, nested ones included."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                yield name, (child.end_lineno or child.lineno) - child.lineno + 1
                yield from visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, prefix + child.name + ".")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def measure() -> dict[str, tuple[int, int]]:
    """Every module and function over its limit: key → (lines, limit)."""
    over: dict[str, tuple[int, int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text("utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            over[rel] = (lines, MAX_MODULE_LINES)
        for name, size in _functions(ast.parse(text, filename=rel)):
            if size > MAX_FUNCTION_LINES:
                over[f"{rel}:{name}"] = (size, MAX_FUNCTION_LINES)
    return over


def _report(offenders: dict[str, tuple[int, int]], what: str) -> str:
    rows = [f"  {key}: {lines} lines (limit {limit})" for key, (lines, limit) in sorted(offenders.items())]
    return f"{len(offenders)} {what}:\n" + "\n".join(rows) + "\nsplit them by job (see DESIGN.md, Style)"


def test_the_scan_sees_the_package() -> None:
    assert (PACKAGE / "__init__.py").is_file()
    assert any(name == "Tagger.tags" for name, _ in _functions(ast.parse((PACKAGE / "enrich/tags.py").read_text())))


def test_no_module_over_400_lines() -> None:
    offenders = {k: v for k, v in measure().items() if ":" not in k}
    assert not offenders, _report(offenders, f"module(s) over {MAX_MODULE_LINES} lines")


def test_no_function_over_60_lines() -> None:
    offenders = {k: v for k, v in measure().items() if ":" in k}
    assert not offenders, _report(offenders, f"function(s) over {MAX_FUNCTION_LINES} lines")
