"""The house keeps its floors: byel's import graph, drawn from the source with `ast`.

Every module of byel/ has a floor (FLOORS, bottom to top; docs: issue 27's layout) and imports
only from its own floor or below; there is no import circle; no module imports another module's
`_private` name. The one import allowed to run up is the deliberate lazy facade: the package's
``byel.load`` & co. (byel/__init__.py) import ``byel.api`` on first use.

Every import counts: at the top of a module or inside a function (laziness keeps `import byel`
light, it never excuses a wrong-way import), ``import a.b``, ``from a import b`` (b a module or a
name in a) and relative ``from . import b``.

Run as a script for the figures: ``python tests/test_architecture.py``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "byel"

# Floors, bottom to top. A module takes the floor of the longest name here that it is or lies
# under ("byel" itself names only the package's __init__). A new module must be placed: either
# under a package listed here or by name.
FLOORS = {
    1: ["byel", "byel.errors", "byel.classes", "byel.choices", "byel.imageio", "byel.losses", "byel.plots",
        "byel.data.formats", "byel.files", "byel.landmarker"],  # ground
    2: ["byel.config", "byel.metrics", "byel.provenance", "byel.checkpoint", "byel.checks", "byel.track",
        "byel.optim", "byel.models", "byel.outputs"],  # records
    3: ["byel.data"],  # data
    4: ["byel.faces"],  # faces
    5: ["byel.synth", "byel.methods"],  # makers
    6: ["byel.classifier", "byel.detect", "byel.media"],  # services
    7: ["byel.train", "byel.evaluate", "byel.adapt", "byel.latents", "byel.export", "byel.submit",
        "byel.predict"],  # stages
    8: ["byel.pipeline", "byel.experiments", "byel.speed", "byel.api"],  # jobs
    9: ["byel.cli", "byel.serve", "byel.__main__"],  # doors (byel.cli: the package and each of its modules)
}
FACADE = ("byel", "byel.api")  # `import byel` stays light: byel.load & co. import byel.api on first use


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. "byel.synth.mesh"
    module: str  # the byel module imported (or that the name is taken from)
    name: str | None  # the name taken from `module` (None: the module itself)
    line: int
    late: bool  # inside a function

    def where(self) -> str:
        path = _modules()[self.importer].relative_to(ROOT)
        what = self.module + (f".{self.name}" if self.name else "")
        return f"{path}:{self.line}: {self.importer} imports {what}"


@lru_cache(maxsize=None)
def _modules() -> dict[str, Path]:
    """Every module of byel/, by dotted name (a package by its own name)."""
    mods = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The byel module a dotted name lies in (itself, or the nearest module above it)."""
    while name and name not in mods:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name or None


def _targets(importer: str, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(byel module, name taken from it or None) for each name an import statement binds."""
    if isinstance(node, ast.Import):
        return [(m, None) for a in node.names if (m := _owner(a.name, mods))]
    if node.level:  # relative: from the importer's package, `level - 1` packages up
        package = importer.split(".") if mods[importer].name == "__init__.py" else importer.split(".")[:-1]
        base = ".".join(package[:len(package) - (node.level - 1)] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    out = []
    for a in node.names:
        full = f"{base}.{a.name}"
        if full in mods:  # `from byel.faces import batch`: the module batch
            out.append((full, None))
        elif m := _owner(base, mods):
            out.append((m, a.name))
    return out


def _private_attributes(tree: ast.AST, importer: str, mods: dict[str, Path]) -> list[Import]:
    """`module._name` where `module` is a byel module bound by an import (``from byel import
    predict; predict._frames()``): a private import by another spelling."""
    bound: dict[str, str] = {}  # local name -> byel module it is
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in mods:
                    bound[a.asname] = a.name
                elif not a.asname and a.name.split(".")[0] == "byel":
                    bound["byel"] = "byel"
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                for m, name in _targets(importer, ast.ImportFrom(node.module, [a], node.level), mods):
                    if name is None:
                        bound[a.asname or a.name] = m
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        parts, value = [], node.value
        while isinstance(value, ast.Attribute):
            parts.append(value.attr)
            value = value.value
        if not isinstance(value, ast.Name) or value.id not in bound:
            continue
        dotted = ".".join([bound[value.id], *reversed(parts)])
        if dotted in mods and dotted != importer:
            found.append(Import(importer, dotted, node.attr, node.lineno, False))
    return found


@lru_cache(maxsize=None)
def graph() -> tuple[list[Import], list[Import]]:
    """(every import of a byel module by another, every `module._private` attribute use)."""
    mods = _modules()
    imports, attributes = [], []
    for importer, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        late = {id(sub) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                for sub in ast.walk(fn) if isinstance(sub, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for m, name in _targets(importer, node, mods):
                    if m != importer:
                        imports.append(Import(importer, m, name, node.lineno, id(node) in late))
        attributes += _private_attributes(tree, importer, mods)
    return imports, attributes


def floor(module: str) -> int | None:
    best = None
    for level, names in FLOORS.items():
        for n in names:
            if (module == n or (n != "byel" and module.startswith(n + "."))) and (best is None or len(n) > best[1]):
                best = (level, len(n))
    return best[0] if best else None


def circles() -> list[list[str]]:
    """Groups of modules that import each other, directly or round a circle (Tarjan's strongly
    connected components), the facade's import left out."""
    edges: dict[str, set[str]] = {}
    for i in graph()[0]:
        if (i.importer, i.module) != FACADE:
            edges.setdefault(i.importer, set()).add(i.module)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(_modules()):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def upward() -> list[Import]:
    """Imports of a module on a higher floor (one per name taken), the facade's left out."""
    return [i for i in graph()[0] if (i.importer, i.module) != FACADE
            and None not in (floor(i.importer), floor(i.module)) and floor(i.module) > floor(i.importer)]


def private() -> list[Import]:
    """Another module's `_private` names, imported or taken as an attribute of an imported module."""
    imports, attributes = graph()
    return [i for i in imports if i.name and i.name.startswith("_") and not i.name.startswith("__")] + attributes


def unplaced() -> list[str]:
    return [m for m in _modules() if floor(m) is None]


def _listing(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n" + "\n".join(f"  {line}" for line in lines)


def test_no_import_circle():
    found = circles()
    assert not found, _listing("import circles (each group's files import each other, round a circle)",
                               [", ".join(g) for g in found])


def test_every_import_runs_down_a_floor():
    found = upward()
    assert not found, _listing("imports that run up a floor (move the shared code down, or the call up)",
                               [f"{i.where()}  (floor {floor(i.importer)} -> {floor(i.module)})" for i in found])


def test_no_module_imports_another_modules_private_name():
    found = private()
    assert not found, _listing("imports of another module's _private name (make it public in its home)",
                               [i.where() for i in found])


def test_every_module_has_a_floor():
    found = unplaced()
    assert not found, _listing("modules without a floor (place them in FLOORS, tests/test_architecture.py)", found)


def test_the_graph_sees_every_kind_of_import():
    """The drawing itself: late, relative and `import a.b` imports are all edges, and a private
    name is found however it is reached."""
    imports = graph()[0]
    pairs = {(i.importer, i.module) for i in imports}
    assert FACADE in pairs  # inside a function, `from byel import api`: a module taken from a package
    assert any(i.late for i in imports) and any(not i.late for i in imports)
    assert len(_modules()) > 50 and all(m == "byel" or m.startswith("byel.") for m in _modules())
    mods = _modules()

    def targets(code: str, importer: str = "byel.synth.mesh") -> list[tuple[str, str | None]]:
        return _targets(importer, ast.parse(code).body[0], mods)

    assert targets("import byel.faces.batch") == [("byel.faces.batch", None)]
    assert targets("import numpy, byel.faces.batch.Meshes") == [("byel.faces.batch", None)]
    assert targets("from . import warp") == [("byel.synth.warp", None)]
    assert targets("from .warp import _x") == [("byel.synth.warp", "_x")]
    assert targets("from ..faces import batch") == [("byel.faces.batch", None)]
    assert targets("from . import mesh", importer="byel.synth") == [("byel.synth.mesh", None)]
    assert targets("from byel.faces.batch import Meshes") == [("byel.faces.batch", "Meshes")]
    code = ("def f():\n    from byel import predict as p\n    import byel.faces.batch\n"
            "    return p._frames(), byel.faces.batch._CHUNK, p.public\n")
    found = _private_attributes(ast.parse(code), "byel.api", mods)
    assert sorted((i.module, i.name) for i in found) == [("byel.faces.batch", "_CHUNK"), ("byel.predict", "_frames")]


def main() -> int:
    imports, _ = graph()
    mods = _modules()
    used = sorted({floor(m) for m in mods} - {None})
    print(f"files            {len(mods)}")
    print(f"floors           {len(used)} ({', '.join(map(str, used))})")
    print(f"imports          {len({(i.importer, i.module) for i in imports})} module pairs, "
          f"{len(imports)} names")
    found = circles()
    print(f"circles          {len(found)}")
    for g in found:
        print(f"  {len(g)} files: {', '.join(g)}")
    up = upward()
    pairs = sorted({(i.importer, i.module) for i in up})
    print(f"upward imports   {len(pairs)} module pairs, {len(up)} names (besides the facade "
          f"{FACADE[0]} -> {FACADE[1]})")
    for i in up:
        print(f"  {i.where()}  (floor {floor(i.importer)} -> {floor(i.module)})")
    priv = private()
    print(f"private imports  {len(priv)}")
    for i in priv:
        print(f"  {i.where()}")
    late = [i for i in imports if i.late]
    print(f"inside functions {len(late)} imports of byel names, in {len({i.importer for i in late})} files")
    for m in unplaced():
        print(f"  no floor: {m}")
    return 1 if found or up or priv or unplaced() else 0


if __name__ == "__main__":
    sys.exit(main())
