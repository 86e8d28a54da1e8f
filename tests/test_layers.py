"""The package's layers: no module imports one from a layer above its own (see cclink/__init__.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cclink"
# Lowest first. errors and text serve every layer.
LAYERS = ["errors", "text", "local", "wire", "net", "flows", "dev", "cli", "__main__"]
# Imports that still reach up, each to be removed; the flows take a UI as an argument next.
KNOWN_EXCEPTIONS = {
    ("flows.publish", "cli.console"),
    ("flows.pickup", "cli.console"),
    ("flows.manage", "cli.console"),
}


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def cclink_imports(path: Path) -> set[str]:
    """The cclink modules a file imports, as dotted names below cclink (`wire.keys`, `errors`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cclink":
            base = node.module.removeprefix("cclink").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                is_module = (PACKAGE / Path(*candidate.split("."))).with_suffix(".py").exists()
                found.add(candidate if is_module else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("cclink.") for a in node.names if a.name.startswith("cclink.")}
    return {name for name in found if name and name != "__version__"}


def modules() -> list[tuple[str, Path]]:
    return sorted(
        (".".join(path.relative_to(PACKAGE).with_suffix("").parts), path)
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    )


@pytest.mark.parametrize(("module", "path"), modules(), ids=[name for name, _ in modules()])
def test_no_module_imports_from_a_layer_above_its_own(module: str, path: Path) -> None:
    upward = {
        imported
        for imported in cclink_imports(path)
        if layer_of(imported) > layer_of(module) and (module, imported) not in KNOWN_EXCEPTIONS
    }
    assert upward == set(), f"{module} imports from above its layer"


def test_the_known_exceptions_still_exist() -> None:
    """An exception that was removed must leave the list too, so the list never hides a new one."""
    for module, imported in KNOWN_EXCEPTIONS:
        assert imported in cclink_imports(PACKAGE / Path(*module.split(".")).with_suffix(".py"))
