"""The package layering holds: every import in ``skiparse/`` and ``suv/`` (module level or inside a function) points
down or sideways, never up, and no two files import each other, directly or around a loop.

    suv.cli (every console script) -> suv.train -> suv.models | suv.vae | suv.text | suv.sampling
        -> suv.parallel | suv.io -> skiparse

Modules of one layer may import each other (without a cycle). ``skiparse`` knows no ``suv``. The deprecated
``suv.checkpoint`` / ``suv.suv_checkpoint`` / ``suv.train.cli`` sit at the top: nothing in the packages imports them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("skiparse", "suv")
LAYERS = {  # module prefix -> layer (higher imports lower); the longest matching prefix wins
    "skiparse": 0,
    "suv.io": 1, "suv.parallel": 1,
    "suv.models": 2, "suv.vae": 2, "suv.text": 2, "suv.sampling": 2,
    "suv.train": 3,
    "suv.cli": 4, "suv.checkpoint": 4, "suv.suv_checkpoint": 4, "suv._deprecated": 4, "suv.train.cli": 4,
}  # fmt: skip
TOP = {"suv": 4}  # the package itself only: a new top-level module must be given its layer
NAMES = {0: "skiparse", 1: "parallel | io", 2: "models | vae | text | sampling", 3: "train", 4: "cli"}


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the packages (a package is its ``__init__.py``)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the packages that ``name`` imports anywhere in its file (``from pkg import sub`` counts as
    importing the submodule ``pkg.sub`` when there is one, else ``pkg``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer(name: str) -> int | None:
    if name in TOP:
        return TOP[name]
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len, default=None)
    return None if prefix is None else LAYERS[prefix]


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in edges.items():
        for target in sorted(targets):
            if source.startswith("skiparse") and target.startswith("suv"):
                bad.append(f"{source} imports {target}: skiparse must not know suv")
            elif layer(target) > layer(source):
                bad.append(f"{source} ({NAMES[layer(source)]}) imports {target} ({NAMES[layer(target)]}): upward")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert [name for name in modules(ROOT) if layer(name) is None] == []


def test_no_upward_import():
    assert upward_imports(graph(ROOT)) == []


def test_no_import_cycle_between_files():
    assert cycles(graph(ROOT)) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A model importing the trainer, skiparse importing suv, and two files importing each other (one of the imports
    inside a function) are each reported."""
    files = {
        "skiparse/__init__.py": "",
        "skiparse/api.py": "def f():\n    import suv.io\n",
        "suv/__init__.py": "",
        "suv/io.py": "",
        "suv/models/__init__.py": "from .model import M\n",
        "suv/models/model.py": "from ..train.trainer import T\n",
        "suv/train/__init__.py": "",
        "suv/train/trainer.py": "def g():\n    from suv.models import model\n",
    }  # fmt: skip
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    edges = graph(tmp_path)
    assert upward_imports(edges) == [
        "skiparse.api imports suv.io: skiparse must not know suv",
        "suv.models.model (models | vae | text | sampling) imports suv.train.trainer (train): upward",
    ]
    assert cycles(edges) == [["suv.models.model", "suv.train.trainer"]]


@pytest.mark.parametrize("source", ["import suv.parallel.sequence as sp", "from suv.parallel import sequence"])
def test_import_forms_resolve_to_the_module(tmp_path, source):
    for rel in ("suv/__init__.py", "suv/parallel/__init__.py", "suv/parallel/sequence.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "suv/x.py").write_text(source + "\n")
    assert graph(tmp_path)["suv.x"] == {"suv.parallel.sequence"}
