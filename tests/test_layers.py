"""The package's layers: no module imports one from a layer above its own (see cclink/__init__.py),
and the flows touch neither the terminal nor the process's globals (they are handed a UI and an Environment).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cclink"
# Lowest first. errors and text serve every layer.
LAYERS = ["errors", "text", "local", "wire", "net", "flows", "dev", "cli", "__main__"]
# What only the CLI (or Environment.of_this_process) may touch: the terminal, and the process's globals.
TERMINAL_AND_GLOBALS = {
    "print",
    "input",
    "getpass",
    "sys.stdin",
    "sys.stdout",
    "sys.stderr",
    "os.environ",
    "os.getenv",
    "os.getcwd",
    "Path.cwd",
    "socket.gethostname",
    "time.time",
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
    upward = {imported for imported in cclink_imports(path) if layer_of(imported) > layer_of(module)}
    assert upward == set(), f"{module} imports from above its layer"


def names_used(path: Path) -> set[str]:
    """Every name and dotted attribute chain a file mentions (`print`, `sys.stdout`, `Path.cwd`)."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            used.add(f"{node.value.id}.{node.attr}")
    return used


FLOWS = [(name, path) for name, path in modules() if name.startswith("flows.") and name != "flows.environment"]


@pytest.mark.parametrize(("module", "path"), FLOWS, ids=[name for name, _ in FLOWS])
def test_flows_neither_touch_the_terminal_nor_read_the_processs_globals(module: str, path: Path) -> None:
    assert names_used(path) & TERMINAL_AND_GLOBALS == set(), f"{module} should ask its UI or its Environment"


def test_the_check_for_terminal_and_globals_sees_them(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import sys, time\nprint(time.time(), file=sys.stderr)\n")
    assert names_used(sample) & TERMINAL_AND_GLOBALS == {"print", "time.time", "sys.stderr"}
