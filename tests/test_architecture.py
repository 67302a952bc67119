"""The folder tree is the pipeline: no import cycles, and no stage imports one above it.

Every ``import`` in ``edgekd/`` counts, wherever it is written (module level, inside a function,
under ``if TYPE_CHECKING:``): a function-level import hides a cycle from Python but not from a
reader. :data:`LAYERS` is the one place the order is written down, lowest first; a module may
import its own layer and those below it. Data flows distil → quantize → convert → bench; models,
data and eval sit below every stage; ``edge/`` composes the stages (QAT training, pruning,
budgets measured by the harness); the CLI, the demo and the package's lazy API are on top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgekd"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "files", "registry", "extras", "settings", "_version", "formats", "bundle", "quiet"),  # stdlib + numpy, no torch
    ("data", "models", "eval"),
    ("distillation",),
    ("quantization",),
    ("convert", "android"),  # the app side of a bundle: reads edgekd.json and the format table only
    ("bench",),
    ("edge",),
    ("fit",),  # the student search: composes distillation, edge, convert and bench
    ("demo", "demo_report"),
    ("cli", "__init__", "__main__"),
)


@dataclass(frozen=True)
class Edge:
    src: str  # importing module (dotted)
    dst: str  # imported edgekd module (dotted)
    where: str  # file:line of the import statement


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(modules: dict[str, Path] | None = None) -> Iterator[Edge]:
    """Every import of an edgekd module by an edgekd module (``from pkg import sub`` names the submodule)."""
    modules = modules or _modules()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT.parent)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t == "edgekd" or t.startswith("edgekd."):
                    while t not in modules:  # `import edgekd.a.b` of an attribute: the nearest module
                        t = t.rsplit(".", 1)[0]
                    if t != name:
                        yield Edge(name, t, f"{rel}:{node.lineno}")


def unit(module: str) -> str:
    """The top-level part of edgekd a module belongs to (``edgekd.bench.targets.ssh`` → ``bench``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def rank(module: str) -> int:
    u = unit(module)
    for i, layer in enumerate(LAYERS):
        if u in layer:
            return i
    raise AssertionError(f"{module}: edgekd/{u} is in no layer of tests/test_architecture.py LAYERS; add it there")


def upward_imports(edges: list[Edge]) -> list[Edge]:
    return [e for e in edges if rank(e.dst) > rank(e.src)]


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """The import edges inside each cycle: one list per strongly connected component of more than one
    module (Tarjan), so every line that would have to change is named."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.src, {}).setdefault(e.dst, e)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [sorted((e for v in sorted(c) for w, e in graph[v].items() if w in c), key=lambda e: e.where)
            for c in comps]


def _show(e: Edge) -> str:
    return f"{e.where}: {e.src} imports {e.dst}"


def test_the_walk_sees_function_level_and_type_checking_imports() -> None:
    edges = list(import_edges())
    assert len(edges) > 200  # the walk reads every file, not just the module headers
    inside = [e for e in edges if e.src == "edgekd.cli" and unit(e.dst) == "distillation"]
    assert inside, "cli imports distillation inside its functions; the walk must see that"


def test_no_import_cycles() -> None:
    found = cycles(list(import_edges()))
    msg = "\n\n".join(f"cycle {i + 1}:\n  " + "\n  ".join(_show(e) for e in c) for i, c in enumerate(found))
    assert not found, f"{len(found)} import cycle(s) in edgekd/ (break each at one of these lines):\n{msg}"


def test_no_upward_imports() -> None:
    bad = upward_imports(list(import_edges()))
    msg = "\n".join(f"  {_show(e)}  ({unit(e.src)} is below {unit(e.dst)})" for e in bad)
    assert not bad, (f"{len(bad)} import(s) from a lower layer to a higher one (order: "
                     f"{' < '.join('/'.join(g) for g in LAYERS)}):\n{msg}")


@pytest.mark.parametrize(("src", "dst", "upward"), [
    ("edgekd.convert.tflite", "edgekd.quantization", False),
    ("edgekd.models.saved", "edgekd.edge.prune", True),
    ("edgekd.bench.harness", "edgekd.bundle", False),
    ("edgekd.data.core", "edgekd.bundle", False),
])
def test_layer_order(src: str, dst: str, upward: bool) -> None:
    assert bool(upward_imports([Edge(src, dst, "x.py:1")])) is upward


def test_cycle_finder_reports_the_lines() -> None:
    edges = [Edge("edgekd.a", "edgekd.b", "a.py:3"), Edge("edgekd.b", "edgekd.c", "b.py:7"),
             Edge("edgekd.c", "edgekd.a", "c.py:9"), Edge("edgekd.c", "edgekd.d", "c.py:10")]
    (c,) = cycles(edges)
    assert [e.where for e in c] == ["a.py:3", "b.py:7", "c.py:9"]  # c -> d leaves the cycle: not named


# -- one table per fact: file suffixes and runtime modules are named in edgekd/formats.py only -------------
# The converter modules a row names (``exporter`` / ``host_runner``) import and name their own runtime: that is
# the "one converter file" of a format. extras.py is the pip extras' table (each extra's modules).
_TABLE_OWNERS = {"formats.py", "extras.py"}
# literals that look like a format fact but are another one (file, literal) -> why
FORMAT_LITERALS_ALLOWED: dict[tuple[str, str], str] = {
    ("data/images.py", "tensorflow"): "a loaded TensorFlow makes fork unsafe: a fact about fork, not a format",
    ("fit/coverage.py", "executorch"): "the coverage cache key's toolchain; a new format must not change old keys",
}
# torch is the framework every stage imports: the string names a converter, a dtype prefix or a backend too
_NOT_ONLY_A_RUNTIME = {"torch"}


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def _extra_names(tree: ast.AST) -> set[int]:
    """The first argument of ``requires(...)`` / ``check(...)``: the name of a pip extra, not a module."""
    return {id(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args
            and getattr(n.func, "id", getattr(n.func, "attr", None)) in ("requires", "check")}


def format_literals(source: str, suffixes: list[str], modules: list[str]) -> list[tuple[int, str]]:
    """(line, literal) of every string constant in ``source`` (docstrings, comments and extra names aside)
    that is or ends with a file suffix, or is a runtime module (or a submodule of one)."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _extra_names(tree)
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip:
            v = n.value
            if v.lower().endswith(tuple(suffixes)) or any(v == m or v.startswith(m + ".") for m in modules):
                out.append((n.lineno, v))
    return sorted(out)


def test_format_facts_are_named_in_the_format_table_only() -> None:
    from edgekd.formats import FORMATS, runtime_modules, suffixes

    converters = {getattr(f, attr).partition(":")[0] for f in FORMATS.values() for attr in ("exporter", "host_runner")}
    modules = [m for m in runtime_modules() if m not in _NOT_ONLY_A_RUNTIME]
    assert len(suffixes()) >= 3 and "executorch" in modules and "ai_edge_litert" in modules
    bad, allowed = [], set()
    for name, path in _modules().items():
        rel = str(path.relative_to(ROOT))
        if rel in _TABLE_OWNERS or name in converters:
            continue
        found = format_literals(path.read_text(), suffixes(), modules)
        allowed |= {(rel, v) for _, v in found if (rel, v) in FORMAT_LITERALS_ALLOWED}
        bad += [f"edgekd/{rel}:{line}: {v!r}" for line, v in found if (rel, v) not in FORMAT_LITERALS_ALLOWED]
    assert allowed == set(FORMAT_LITERALS_ALLOWED), f"stale allowances: {set(FORMAT_LITERALS_ALLOWED) - allowed}"
    assert not bad, ("a file suffix or runtime module written outside edgekd/formats.py (read it from the table: "
                     "suffixes(), suffix_rows(), runtime_modules(), row(...).plugin/.runtimes/.dists):\n  "
                     + "\n  ".join(bad))


def test_the_literal_check_catches_what_it_should() -> None:
    src = ('"""A docstring naming .pte and executorch is fine."""\n'
           'def f(path):\n'
           '    with requires("executorch"):\n'  # an extra's name
           '        pass\n'
           '    # a comment naming ".tflite" is fine\n'
           '    return path.endswith(".tflite") or "ai_edge_litert.interpreter" or "model.pt2" or "pte"\n')
    assert format_literals(src, [".pte", ".tflite", ".pt2"], ["executorch", "ai_edge_litert"]) == [
        (6, ".tflite"), (6, "ai_edge_litert.interpreter"), (6, "model.pt2")]
