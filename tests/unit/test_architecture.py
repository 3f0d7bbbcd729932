"""The house by stage: no import cycles (imports inside functions included), small modules and functions,
no private names imported across modules, strategies compared by name only in their registry."""
import ast
import re
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "mllm_mer"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*roots: Path) -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for root in roots for p in sorted(root.rglob("*.py"))}


def imported(name: str, path: Path, tree: ast.Module, known: set[str]) -> set[tuple[str, str]]:
    """(module, name) pairs a module imports, at any depth of its code (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, "") for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add((sub, "") if sub in known else (target, alias.name))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = sources(PACKAGE)
    known = set(modules)
    return {name: {m for m, _ in imported(name, path, tree, known) if m in known and m != name}
            for name, (path, tree) in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    """The checker itself: a made-up graph with a cycle, and one without."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("def f():\n    from mllm_mer.x import y\n")
    assert ("mllm_mer.x", "y") in imported("mllm_mer.z", PACKAGE / "z.py", tree, set())


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 50
    assert cycles(graph) == []


def test_the_package_root_holds_only_subpackages():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) in (["__init__.py"], ["__init__.py", "__main__.py"])


def test_modules_and_functions_are_small():
    too_long, big_functions = [], []
    for name, (path, tree) in sources(PACKAGE).items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big_functions.append(f"{name}.{node.name}: {length} lines")
    assert too_long == [] and big_functions == []


def test_no_private_name_is_imported_from_another_module():
    modules = sources(PACKAGE, REPO / "benchmarks")
    known = set(modules)
    offenders = [f"{name} imports {target}.{what}" for name, (path, tree) in modules.items()
                 for target, what in imported(name, path, tree, known)
                 if target.startswith("mllm_mer") and target != name
                 and (what.startswith("_") or target.rpartition(".")[2].startswith("_"))
                 and not what.startswith("__")]
    assert offenders == []


def test_module_state_is_named():
    """Mutable module-level state (a cache, a registry of planned work) has an upper-case name that says so."""
    mutable = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
    found = []
    for name, (_, tree) in sources(PACKAGE).items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) and node.value is not None else []
            value = getattr(node, "value", None)
            calls_factory = isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")
                                                                   ) in ("OrderedDict", "defaultdict", "dict", "list")
            if isinstance(value, mutable) or calls_factory:
                found += [f"{name}.{t.id}" for t in targets if isinstance(t, ast.Name) and not t.id.isupper()
                          and t.id != "__all__"]
    assert found == []


def test_strategies_are_compared_by_name_only_in_their_registry():
    pattern = re.compile(r"strategy ?(==|!=|in \()|draws ?>")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in PACKAGE.rglob("*.py") for i, line in
                 enumerate(p.read_text().splitlines(), 1) if pattern.search(line)
                 and p.relative_to(PACKAGE).parts[0] != "strategies"]
    assert offenders == []
