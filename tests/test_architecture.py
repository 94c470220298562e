"""The shape of the package: no import cycles, one registry helper, nothing silently skipped.

``python -m pytest tests/test_architecture.py -k cycles`` is the command that proves the
intra-package import graph is acyclic: it parses every module of ``geoalign`` (imports
inside functions included, and ``importlib.import_module("geoalign....")`` calls with a
literal name), resolves relative imports, and looks for strongly connected components.
Lazy ``"module:attr"`` strings (registry entries, the package ``__init__`` re-export
tables, deprecated aliases) are not imports: they are looked up by name when used,
after both modules have loaded.
"""
import ast
import importlib
import warnings
from pathlib import Path

import pytest

from geoalign._registry import Registry, UnknownNameError, is_lazy_target, resolve_target
from geoalign._warnings import GeoalignDeprecationWarning

PACKAGE = Path(__file__).resolve().parents[1] / "geoalign"


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return mods


def import_graph() -> dict[str, set[str]]:
    """``module -> set of geoalign modules it imports`` (anywhere in its source)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                    if node.level else node.module
                # ``from pkg import sub`` imports the submodule pkg.sub
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                targets = [node.args[0].value]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles():
    graph = import_graph()
    assert "geoalign.models.base" in graph and len(graph) > 50
    cycles = strongly_connected(graph)
    detail = "; ".join(" <-> ".join(c) + " (" + ", ".join(f"{m} -> {sorted(graph[m] & set(c))}"
                                                          for m in c) + ")" for c in cycles)
    assert not cycles, f"import cycles: {detail}"


def test_cycle_finder_finds_cycles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


# ----------------------------------------------------------------------------- registries
def _registries():
    from geoalign.cli import COMMANDS
    from geoalign.comparison import METHODS
    from geoalign.data.sources import DATASETS
    from geoalign.figures.registry import FIGURES
    from geoalign.models.base import MODEL_REGISTRY
    from geoalign.studies import STUDIES

    return {"models": MODEL_REGISTRY, "datasets": DATASETS, "studies": STUDIES, "figures": FIGURES,
            "comparison methods": METHODS, "commands": COMMANDS}


def test_every_registry_uses_the_helper_and_resolves():
    for kind, registry in _registries().items():
        assert isinstance(registry, Registry), kind
        assert len(registry) > 0, kind
        for name in registry:
            assert registry[name] is not None, (kind, name)


def test_every_command_resolves():
    from geoalign.cli import COMMANDS

    for name in COMMANDS:
        module, _help, *functions = COMMANDS[name]
        configure, run = functions or ("configure_parser", "run_cli")
        assert callable(resolve_target(f"{module}:{configure}")), name
        assert callable(resolve_target(f"{module}:{run}")), name


def _decorated_figures() -> dict[str, str]:
    """``name -> "module:function"`` of every ``@figure(...)`` in geoalign/figures (by parsing)."""
    found = {}
    for path in sorted((PACKAGE / "figures").glob("*.py")):
        module = f"geoalign.figures.{path.stem}"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "figure":
                    found[dec.args[0].value] = f"{module}:{node.name}"
    return found


def test_every_figure_is_registered():
    from geoalign.figures.registry import FIGURES, load_all

    decorated = _decorated_figures()
    assert len(decorated) >= 10
    listed = {name: FIGURES.target(name) for name in FIGURES if is_lazy_target(FIGURES.target(name))}
    assert listed == decorated, "every @figure must be listed in FIGURES (and nothing else)"
    entries = load_all()
    assert list(entries) == list(FIGURES)
    for name, entry in entries.items():
        assert entry.name == name and entry.kind in ("figure", "table") and entry.description


# ----------------------------------------------------------------------------- the helper
def test_registry_is_lazy_and_loud():
    reg = Registry("widget", {"json": "json:dumps"})
    assert "json" in reg and not reg.is_loaded("json")
    assert reg["json"] is __import__("json").dumps and reg.is_loaded("json")
    assert reg.target("json") == "json:dumps"

    @reg.register("square")
    def square(x):
        return x * x

    assert reg["square"] is square and list(reg) == ["json", "square"]
    assert reg.register("cube", lambda x: x ** 3)(2) == 8
    with pytest.raises(ValueError, match="widget 'square' is already registered"):
        reg.register("square", len)
    reg.register("square", len, replace=True)
    assert reg["square"] is len
    with pytest.raises(UnknownNameError, match="unknown widget 'nope'; registered: cube, json, square"):
        reg["nope"]  # noqa: B018
    with pytest.raises(KeyError):
        reg["nope"]  # noqa: B018
    with pytest.raises(ValueError):
        reg.target(["unhashable"])
    with pytest.raises(ValueError, match="must look like 'package.module:attr'"):
        reg.register("bad", "no_colon")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", len)
    reg.register("broken", "json:no_such_function")
    with pytest.raises(ImportError, match="'json:no_such_function'.*no attribute"):
        reg["broken"]  # noqa: B018
    reg.register("missing", "geoalign.no_such_module:x")
    with pytest.raises(ImportError, match="cannot import module 'geoalign.no_such_module'"):
        reg["missing"]  # noqa: B018
    del reg["broken"], reg["missing"]
    assert set(reg) == {"json", "square", "cube"}


# ----------------------------------------------------------------------------- old paths
MOVED = [
    ("geoalign.train", "load_config", "geoalign.cli.train"),
    ("geoalign.train", "configure_train_parser", "geoalign.cli.train"),
    ("geoalign.train", "run_train_cli", "geoalign.cli.train"),
    ("geoalign.train", "configure_eval_parser", "geoalign.cli.train"),
    ("geoalign.train", "run_eval_cli", "geoalign.cli.train"),
    ("geoalign.train", "load_dataset", "geoalign.data.sources"),
    ("geoalign.train", "register_dataset", "geoalign.data.sources"),
    ("geoalign.train", "DATASETS", "geoalign.data.sources"),
    ("geoalign.sweep", "Study", "geoalign.studies"),
    ("geoalign.sweep", "register_study", "geoalign.studies"),
    ("geoalign.sweep", "get_study", "geoalign.studies"),
    ("geoalign.sweep", "list_studies", "geoalign.studies"),
    ("geoalign.sweep", "run_study", "geoalign.studies"),
    ("geoalign.sweep", "concentration_study", "geoalign.studies"),
    ("geoalign.sweep", "configure_parser", "geoalign.cli.sweep"),
    ("geoalign.sweep", "run_cli", "geoalign.cli.sweep"),
    ("geoalign.sweep", "distributed_fiber_product", "geoalign.fiber_distributed"),
    ("geoalign.sweep", "BlockedFiberProduct", "geoalign.fiber.FiberProduct"),
]


@pytest.mark.parametrize("old, name, new", MOVED, ids=[f"{o}.{n}" for o, n, _ in MOVED])
def test_moved_names_still_work_with_a_warning(old, name, new):
    module = importlib.import_module(old)
    new_module, new_name = (new.rsplit(".", 1) if new[new.rfind(".") + 1].isupper() else (new, name))
    with pytest.warns(GeoalignDeprecationWarning,
                      match=f"{old}.{name} is deprecated; use {new_module}.{new_name} instead"):
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(new_module), new_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            module.nope  # noqa: B018


# ----------------------------------------------------------------------------- the top-level API
def test_every_result_type_of_an_exported_function_is_exported():
    """A class named in the return annotation or the numpydoc ``Returns`` section of an exported
    function (or public method of an exported class), defined in its module, is exported too."""
    import inspect
    import re

    import geoalign

    exported = set(geoalign.__all__)
    missing = {}
    for name in geoalign.__all__:
        obj = getattr(geoalign, name)
        if inspect.isfunction(obj):
            funcs = [obj]
        elif inspect.isclass(obj):
            funcs = [m for k, m in vars(obj).items() if inspect.isfunction(m) and not k.startswith("_")]
        else:
            continue
        for func in funcs:
            names = set()
            annotation = func.__annotations__.get("return")
            if isinstance(annotation, str):
                names |= set(re.findall(r"[A-Z]\w+", annotation))
            returns = re.search(r"Returns\n-------\n(.*?)(?:\n\n[A-Z]|\Z)", inspect.getdoc(func) or "", re.S)
            if returns:
                names |= set(re.findall(r"^\s*(?:\w+ : )?([A-Z]\w+)", returns.group(1), re.M))
            module = importlib.import_module(func.__module__)
            for cls in names - exported:
                if inspect.isclass(getattr(module, cls, None)) and getattr(module, cls).__module__.startswith("geoalign"):
                    missing.setdefault(cls, func.__qualname__)
    assert not missing, f"result types not exported from geoalign: {missing}"
