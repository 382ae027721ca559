"""The package's import graph: one downward chain, no cycles (issue 11).

Every ``import`` of a fastnn module counts, including the lazy ones inside
functions: a lazy import hides a cycle from Python, not from the reader.
"""
import ast
import pathlib

import fastnn

ROOT = pathlib.Path(fastnn.__file__).parent

# Cycles allowed to remain: none since the backend redesign (issue 11).
# Each entry would be the set of modules of one cycle.
KNOWN_CYCLES = []


def _module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _package(path, name):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _from_module(node, package):
    """The absolute module name of an ``ast.ImportFrom`` (relative ones resolved)."""
    if not node.level:
        return node.module
    base = package.split(".")
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path, name):
    """fastnn modules that ``path`` (module ``name``) imports, anywhere in it."""
    package = _package(path, name)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = _from_module(node, package)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)   # "from pkg import module"
    return out


def _private_name_imports(source, package, modules):
    """``module._name`` for each ``from fastnn.module import _name`` in ``source`` where
    ``_name`` is not itself a module (dunders such as ``__version__`` are not private)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        mod = _from_module(node, package)
        if mod != "fastnn" and not mod.startswith("fastnn."):
            continue
        for a in node.names:
            private = a.name.startswith("_") and not a.name.startswith("__")
            if private and f"{mod}.{a.name}" not in modules:
                out.append(f"{mod}.{a.name}")
    return out


def _graph():
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = {m for m in _imports(path, name) if m in modules and m != name}
        # a package's submodule importing the package itself is how Python
        # loads it, not a dependency on the package's contents
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _strongly_connected(graph):
    """Tarjan's algorithm: the strongly connected components with a cycle."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(comp)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_beyond_the_known_ones():
    cycles = _strongly_connected(_graph())
    new = [c for c in cycles if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(graph) == [{"a", "b", "c"}]


def test_only_the_backend_imports_the_cuda_package():
    """fastnn._cuda is reached through fastnn._backend: nothing else branches on devices
    by importing the CUDA side itself (issue 11)."""
    def is_cuda(m):
        return m == "fastnn._cuda" or m.startswith("fastnn._cuda.")
    graph = _graph()
    outside = {m: sorted(d for d in deps if is_cuda(d)) for m, deps in graph.items()
               if m != "fastnn._backend" and not is_cuda(m)}
    assert not {m: d for m, d in outside.items() if d}


def test_no_module_imports_another_modules_private_names():
    """A ``_name`` is private to its module: what two modules share gets a public name
    (private MODULES, ``from fastnn._cpu import backend``, are fine)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    found = {name: _private_name_imports(path.read_text(), _package(path, name), modules)
             for name, path in modules.items()}
    assert not {name: names for name, names in found.items() if names}


def test_the_private_import_finder_finds_them():
    source = ("from fastnn._cpu import backend, _math\n"
              "from fastnn._cpu._math import (\n    exp,\n    _sign,\n)\n"
              "from fastnn import __version__\n"
              "def f():\n    from ..train import _batches\n"
              "from numpy import _private\n")
    modules = {"fastnn._cpu.backend", "fastnn._cpu._math", "fastnn.train"}
    assert _private_name_imports(source, "fastnn.bench", modules) == [
        "fastnn._cpu._math._sign", "fastnn.train._batches"]
