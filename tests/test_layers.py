"""The package's layers: each imports only from its own layer and those below it, inside functions too
(an import inside a function hides a dependency, it does not remove it). ``shared/ARCHITECTURE.md``
draws them; this test keeps them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "promptlearning"

# bottom to top; a module's layer is given by its first name under promptlearning
LAYERS = [
    {"errors", "io", "devices", "progress", "cancellation", "loading", "runs", "evaluation"},
    {"models"},
    {"prompts"},
    {"methods"},
    {"training", "pretraining", "compression"},
    {"search"},
    {"tasks"},
    {"cli", "serving", "demo", "ui"},
]


def layer(name: str) -> int:
    for rank, names in enumerate(LAYERS):
        if name in names:
            return rank
    raise AssertionError(f"promptlearning.{name} is in no layer: add it to LAYERS")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, first name under promptlearning) of every promptlearning import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = (
                [node.module] if node.module != "promptlearning" else [f"promptlearning.{a.name}" for a in node.names]
            )
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "promptlearning" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_from_a_layer_above_it(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = [
        f"line {line}: promptlearning.{name} (layer {layer(name)}) from promptlearning.{own} (layer {layer(own)})"
        for line, name in imports(path)
        if layer(name) > layer(own)
    ]
    assert not upward, "\n".join(upward)
