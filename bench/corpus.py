"""Deterministic corpora from text already on this machine: Python standard-library docstrings.

Each module becomes one Markdown document: a heading per class/function followed by its docstring.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path


def docstring_documents(min_chars: int = 400, *, include_site_packages: bool = False) -> Iterator[tuple[str, str]]:
    """(name, markdown) per module of the standard library (and, optionally, the installed packages), sorted by
    path so runs are identical."""
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    if include_site_packages:
        roots.append(Path(sysconfig.get_paths()["purelib"]))
    for root in roots:
        yield from _documents(root, min_chars, skip_site_packages=root == roots[0])


def _documents(root: Path, min_chars: int, *, skip_site_packages: bool) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        skip = {"test", "tests", "idlelib", "lib2to3", "turtledemo"} | (
            {"site-packages"} if skip_site_packages else set()
        )
        if any(part in skip for part in rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        parts = []
        module_doc = ast.get_docstring(tree)
        name = ".".join(rel.with_suffix("").parts)
        parts.append(f"# {name}\n\n{module_doc or ''}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    parts.append(f"## {node.name}\n\n{doc}")
        text = "\n\n".join(parts)
        if len(text) >= min_chars:
            yield name, text
