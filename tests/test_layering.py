"""The package's shape, checked: arrows point down only, no import circles (function-level imports included),
`ARMVISION_*` environment variables read in armvision/env.py only, the library has no command line, experiments use
the public API, and files and functions stay short enough to read in one sitting (docs/architecture.md)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "armvision"
ENV_MODULE = "armvision.env"  # the one module that reads ARMVISION_* variables
# Circles outside ops/ and nn/ that other branches are removing (issue 24); each entry is one circle's modules,
# sorted. Remove an entry when its circle is gone (the test then says so). Never add ops/ or nn/ modules here.
KNOWN_CIRCLES: list[tuple[str, ...]] = []  # none left: keep it so

# bottom to top; a module may import its own layer and the layers below it
LAYERS = [
    {"errors", "constants", "fileio", "argcheck", "fields", "version", "env", "progress"},
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


# ---------------------------------------------------------------------------------------------------------
# Import circles: a graph of module -> imported modules from every import statement, function bodies included
# ---------------------------------------------------------------------------------------------------------
def _module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under `root` (a package folder)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _targets(node: ast.AST, package: list[str], names: dict[str, Path]):
    """The package's modules that one import statement loads (`from p import m` loads p.m when m is a module)."""
    if isinstance(node, ast.Import):
        wanted = [a.name for a in node.names]
    else:
        base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else [])) \
            if node.level else (node.module or "")
        wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
    for mod in wanted:
        while mod and mod not in names:  # `import a.b.c` where c is no module: the closest module above
            mod = mod.rpartition(".")[0]
        if mod:
            yield mod


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, anywhere in the file (functions included)."""
    names = _module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in _targets(node, package, names) if t != name)
        graph[name] = edges
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted tuple."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(circles)


def test_no_import_circles():
    found = import_circles(import_graph(PKG))
    new = [c for c in found if c not in KNOWN_CIRCLES]
    assert not new, "import circles (two modules that need each other: one of them is in the wrong place):\n" + \
        "\n".join(" <-> ".join(c) for c in new)
    gone = [c for c in KNOWN_CIRCLES if c not in found]
    assert not gone, f"KNOWN_CIRCLES lists circles that no longer exist: remove them: {gone}"


# ---------------------------------------------------------------------------------------------------------
# Environment variables: ARMVISION_* are read in one module
# ---------------------------------------------------------------------------------------------------------
_ARMVISION_NAME = re.compile(r"ARMVISION_[A-Z0-9_]*")


def _environ_key(node: ast.AST):
    """(True, the key expression) when `node` reads or writes one environment variable by key: os.environ[k],
    os.environ.get(k) / pop / setdefault, os.getenv(k), k in os.environ; else (False, None)."""
    def is_environ(n):
        return (isinstance(n, ast.Attribute) and n.attr == "environ") or (isinstance(n, ast.Name) and n.id == "environ")

    if isinstance(node, ast.Subscript) and is_environ(node.value):
        return True, node.slice
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("get", "pop", "setdefault") and is_environ(node.func.value) and node.args:
            return True, node.args[0]
        if node.func.attr == "getenv" and node.args:
            return True, node.args[0]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getenv" and node.args:
        return True, node.args[0]
    if isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
        return True, node.left
    return False, None


def environment_reads(root: Path, allowed: str) -> list[str]:
    """Places outside module `allowed` that touch an ARMVISION_* variable: a key that names one, a key the check
    cannot read (a variable: it might), or a string that is such a name (a second copy of it)."""
    bad = []
    for name, path in _module_names(root).items():
        if name == allowed:
            continue
        where = path.relative_to(root.parent)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _ARMVISION_NAME.fullmatch(node.value):
                bad.append(f"{where}:{node.lineno} names {node.value!r} (use the constant in {allowed})")
                continue
            found, key = _environ_key(node)
            if not found:
                continue
            literal = isinstance(key, ast.Constant) and isinstance(key.value, str)
            if not literal:
                bad.append(f"{where}:{node.lineno} reads the environment with a computed key")
            elif key.value.startswith("ARMVISION_"):
                bad.append(f"{where}:{node.lineno} reads {key.value}")
    return bad


def test_armvision_environment_is_read_in_one_module():
    bad = environment_reads(PKG, ENV_MODULE)
    assert not bad, f"ARMVISION_* variables are read in {ENV_MODULE} only:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------------------------------------
# The checks above can fail: a planted circle (through a function-level import) and planted environment reads
# ---------------------------------------------------------------------------------------------------------
def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_circle_check_sees_function_level_imports(tmp_path):
    root = _plant(tmp_path, {
        "__init__.py": "",
        "ops/__init__.py": "",
        "ops/a.py": "from . import b\n",
        "ops/b.py": "def f():\n    from .c import g\n    return g\n",
        "ops/c.py": "import pkg.ops.a\n",
        "ops/d.py": "from .a import b\n",  # imports a module of the circle, is not part of it
    })
    assert import_circles(import_graph(root)) == [("pkg.ops.a", "pkg.ops.b", "pkg.ops.c")]
    (root / "ops/b.py").write_text("def f():\n    return 1\n")
    assert import_circles(import_graph(root)) == []


def test_environment_check_sees_every_kind_of_read(tmp_path):
    reads = {
        "get.py": "import os\nx = os.environ.get('ARMVISION_SCAN_BACKEND')\n",
        "item.py": "import os\nx = os.environ['ARMVISION_CACHE']\n",
        "getenv.py": "import os\nx = os.getenv('ARMVISION_CPU_KERNEL', '1')\n",
        "computed.py": "import os\nfrom .env import NAME\nx = os.environ.get(NAME)\n",
        "copy.py": "NAME = 'ARMVISION_SCAN_COMPILE'\n",
        "member.py": "from os import environ\nx = 'ARMVISION_CACHE' in environ\n",
    }
    root = _plant(tmp_path, {"__init__.py": "", "env.py": "import os\nNAME = 'ARMVISION_X'\n"
                             "x = os.environ.get(NAME)\n", "fine.py": "import os\nx = os.environ.get('CC')\n",
                             **reads})
    bad = environment_reads(root, "pkg.env")
    assert sorted({line.split(":")[0] for line in bad}) == sorted(f"pkg/{name}" for name in reads)
