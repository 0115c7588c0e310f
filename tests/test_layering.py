"""The package's shape, checked: arrows point down only, the library has no command line, experiments use the public
API, and files and functions stay short enough to read in one sitting (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "armvision"

# bottom to top; a module may import its own layer and the layers below it
LAYERS = [
    {"errors", "constants", "fileio", "argcheck", "fields", "version"},
    {"ops"},
    {"nn"},
    {"models", "data"},
    {"eval", "deploy"},
    {"train"},
    {"bench", "experiments"},  # tools built on the library
    {"cli"},  # the commands
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
LIBRARY = {name for layer in LAYERS[:6] for name in layer}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 420, 62


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield path, parts, is_pkg


def _imports(path: Path, parts: list[str], is_pkg: bool):
    """Absolute names of the armvision modules (or names) that the file imports, with the line."""
    package = parts if is_pkg else parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "armvision":  # `from armvision import x` / `from .. import x`: x may be a subpackage
                for a in node.names:
                    yield f"armvision.{a.name}", node.lineno
            else:
                yield mod, node.lineno


def _top(parts: list[str]) -> str:
    return parts[1] if len(parts) > 1 else "<face>"


def _sub(mod: str) -> str | None:
    if mod == "armvision":
        return "<face>"
    if not mod.startswith("armvision."):
        return None
    name = mod.split(".")[1]
    return name if name in RANK else "<face>"  # armvision.__version__ etc. come from the face


def test_every_module_is_in_a_layer():
    tops = {_top(parts) for _, parts, _ in _modules()} - {"<face>"}
    assert tops <= set(RANK), f"new top-level modules need a layer in tests/test_layering.py: {tops - set(RANK)}"


def test_imports_point_down_only():
    bad = []
    for path, parts, is_pkg in _modules():
        me = _top(parts)
        if me == "<face>" or parts[-1] == "__main__":  # the face and `python -m` entries may import anything
            continue
        for mod, line in _imports(path, parts, is_pkg):
            target = _sub(mod)
            if target is None or target == me:
                continue
            if target == "<face>" and me == "experiments":  # experiments use the public face (checked below)
                continue
            if target == "<face>" or RANK[target] > RANK[me]:
                bad.append(f"{path.relative_to(PKG)}:{line} ({me}) imports {mod}")
    assert not bad, "imports that point up or at the package face:\n" + "\n".join(bad)


def test_library_has_no_command_line():
    bad = []
    for path, parts, _ in _modules():
        if _top(parts) not in LIBRARY:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("ArgumentParser", "add_argument", "parse_args"):
                bad.append(f"{path.relative_to(PKG)}:{node.lineno} uses argparse.{node.attr}")
            if isinstance(node, ast.FunctionDef) and node.name in ("add_arguments", "main") and node.col_offset == 0:
                bad.append(f"{path.relative_to(PKG)}:{node.lineno} defines {node.name}()")
    assert not bad, "command-line code in the library (it belongs in armvision.cli):\n" + "\n".join(bad)


def test_experiments_use_the_public_api():
    """An experiment imports package faces (`armvision`, `armvision.train`, ...) and the bottom helpers, never a
    private module of the library."""
    public = {"armvision"} | {f"armvision.{n}" for n in LIBRARY}
    bad = []
    for path, parts, is_pkg in _modules():
        if _top(parts) != "experiments":
            continue
        for mod, line in _imports(path, parts, is_pkg):
            if mod.startswith("armvision") and not mod.startswith("armvision.experiments") and mod not in public:
                bad.append(f"{path.relative_to(PKG)}:{line} imports {mod}")
    assert not bad, "experiments reaching past the public API:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", sorted([*PKG.rglob("*.py"), *PKG.rglob("*.c"), *PKG.rglob("*.h")]),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_files_and_functions_are_short(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.relative_to(PKG)} has {len(lines)} lines: split it"
    if path.suffix != ".py":
        return
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(PKG)}: functions over {MAX_FUNCTION_LINES} lines: {long}"
