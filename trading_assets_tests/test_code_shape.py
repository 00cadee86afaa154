"""The package's shape, read from its source with `ast`: short functions with few parameters, no import
circle among its modules, and a core that never reaches up into the settings or the Dagster shell."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import trading_assets

PACKAGE = Path(trading_assets.__file__).resolve().parent
ROOT = PACKAGE.parent
MAX_PARAMETERS = 10
MAX_LINES = 60
#: The core: markets, stores, features, models, promotion, the runtime and the leaf helpers. It knows nothing
#: of where its settings come from or of the Dagster shell around it.
CORE = (
    "market",
    "store",
    "features",
    "ml",
    "promotion",
    "runtime",
    "plots.py",
    "alerts.py",
    "urls.py",
    "retry.py",
    "atomic.py",
)
UPWARD = ("trading_assets.settings", "trading_assets.defs", "dagster")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file of every module of `package`."""
    return {_module_name(path, package.parent): path for path in sorted(package.rglob("*.py"))}


def _functions(
    tree: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method, nested ones included, with its qualified name."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{node.name}", node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Its parameters, *args and **kwargs included, self and cls excluded."""
    args = function.args
    named = [*args.posonlyargs, *args.args]
    if named and named[0].arg in ("self", "cls"):
        named = named[1:]
    return len(named) + len(args.kwonlyargs) + (args.vararg is not None) + (args.kwarg is not None)


def shape_violations(modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    """`file:function (...)` for each function with too many parameters or lines (decorators excluded)."""
    found = []
    for path in modules.values():
        for name, function in _functions(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(root)}:{name}"
            parameters, lines = _parameters(function), function.end_lineno - function.lineno + 1
            if parameters > MAX_PARAMETERS:
                found.append(f"{where} ({parameters} parameters > {MAX_PARAMETERS})")
            if lines > MAX_LINES:
                found.append(f"{where} ({lines} lines > {MAX_LINES})")
    return found


def _imports(path: Path, module: str) -> Iterator[tuple[str, list[str]]]:
    """(module, names) of each import statement, at module level or inside functions alike: `import a.b`
    gives ("a.b", []), `from a.b import c, d` ("a.b", ["c", "d"]); a relative import is resolved."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports. `from a.b import c` imports the module a.b.c when there is
    one, else the names of a.b (its `__init__.py` when a.b is a package)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for base, names in _imports(path, module):
            for name in names or [None]:
                submodule = f"{base}.{name}" if name else None
                targets |= {submodule} if submodule in modules else {base} & modules.keys()
        graph[module] = targets - {module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def upward_imports(modules: dict[str, Path], package: Path = PACKAGE) -> list[str]:
    """`file: module` for each import of the settings, the Dagster shell or Dagster by a core module."""
    core = [package / part for part in CORE]
    found = set()
    for module, path in modules.items():
        if not any(path == part or part in path.parents for part in core):
            continue
        for base, names in _imports(path, module):
            for name in [base, *(f"{base}.{name}" for name in names)]:
                if any(name == banned or name.startswith(f"{banned}.") for banned in UPWARD):
                    found.add(f"{path.relative_to(package.parent)}: {name}")
                    break
    return sorted(found)


def test_no_function_has_more_than_10_parameters_or_60_lines() -> None:
    assert shape_violations(_modules()) == []


def test_no_import_circle_among_the_package_modules() -> None:
    assert import_cycles(import_graph(_modules())) == []


def test_no_core_module_imports_the_settings_the_shell_or_dagster() -> None:
    assert upward_imports(_modules()) == []


def test_each_check_fails_on_a_package_that_breaks_its_rule(tmp_path: Path) -> None:
    package = tmp_path / "trading_assets"
    (package / "ml").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ml" / "__init__.py").write_text("from trading_assets.ml.a import f\n")
    (package / "ml" / "a.py").write_text(
        "def f():\n    from . import b\n\n\n"
        "class C:\n    def g(self, a, b, c, d, e, f, g, h, i, j, *k):\n" + "        x = 1\n" * 60
    )
    (package / "ml" / "b.py").write_text("from trading_assets import settings\nfrom .a import f\n")
    (package / "settings.py").write_text("import dagster\n")
    (package / "urls.py").write_text("def h():\n    import dagster.x\n")
    modules = _modules(package)
    assert shape_violations(modules, tmp_path) == [
        "trading_assets/ml/a.py:C.g (11 parameters > 10)",
        "trading_assets/ml/a.py:C.g (61 lines > 60)",
    ]
    assert import_cycles(import_graph(modules)) == [["trading_assets.ml.a", "trading_assets.ml.b"]]
    assert upward_imports(modules, package) == [
        "trading_assets/ml/b.py: trading_assets.settings",
        "trading_assets/urls.py: dagster.x",
    ]
