"""The package's layout rules, read from the source (see docs/architecture.md).

- each subpackage imports only the subpackages below it, and nothing imports `tfprune` as a
  whole but `cli` and `demo`;
- no import cycle between modules or between subpackages;
- no private name (`_x`) is used outside the module that defines it, tests and tools included;
- private Keras API is used in `tfprune/core/keras_internals.py` only;
- TensorFlow is imported one way (`import tensorflow as tf`, at module level) and only by
  the modules that need it, which the core path never imports.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tfprune"

BELOW = {
    "core": set(),
    "layers": {"core"},
    "graph": {"core", "layers"},
    # The robust Taylor criterion attacks the model it scores.
    "criteria": {"core", "layers", "graph", "robustness"},
    "masking": {"core", "layers", "graph", "criteria"},
    "robustness": {"core"},
    "callbacks": {"core", "layers", "graph", "criteria", "masking", "robustness"},
    "shrinking": {"core", "layers", "graph", "criteria", "masking"},
    "export": {"core", "layers", "graph", "criteria", "masking"},
    "inspection": {"core", "layers", "graph"},
    "methods": {
        "core",
        "layers",
        "graph",
        "criteria",
        "masking",
        "robustness",
        "callbacks",
        "shrinking",
        "export",
        "inspection",
    },
    "zoo": set(),
}
WHOLE = {"cli", "demo"}  # may import anything, `tfprune` itself included

# The modules that import TensorFlow: the converter and sparse storage (TFLite) and
# TensorFlow's gradients.
TENSORFLOW_MODULES = {
    "tfprune.core.gradients_tensorflow",
    "tfprune.export.converter",
    "tfprune.export.sparse_storage",
}
# What `prune`, the callbacks, `strip`, `shrink`, the graph, the gradient-free criteria and
# the inspection tools load: none of it may reach TensorFlow.
CORE_PATH = [
    "tfprune.masking.prune",
    "tfprune.masking.strip",
    "tfprune.callbacks.pruning",
    "tfprune.callbacks.adversarial_aware",
    "tfprune.shrinking.shrink",
    "tfprune.shrinking.heads",
    "tfprune.inspection.summary",
    "tfprune.inspection.explain",
    "tfprune.robustness.accuracy",
    "tfprune.robustness.apgd",
    "tfprune.robustness.attacks",
    "tfprune.robustness.training",
    "tfprune.methods.dsp",
    "tfprune.methods.leap",
]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}
CORE_PATH += [
    m for m in MODULES if m.startswith(("tfprune.graph", "tfprune.layers", "tfprune.criteria"))
]
CORE_PATH += [m for m in MODULES if m.startswith("tfprune.core") and m not in TENSORFLOW_MODULES]
CORE_PATH = [m for m in CORE_PATH if m not in TENSORFLOW_MODULES]


def imports(tree, module):
    """`(imported tfprune module, line, at module level)` for every import in a tree."""
    package = (
        module
        if MODULES.get(module, pathlib.Path()).name == "__init__.py"
        else module.rpartition(".")[0]
    )
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            found.append((name, node.lineno, id(node) in top_level))
    return found


def tfprune_imports(module):
    return [
        (name, line, top)
        for name, line, top in imports(TREES[module], module)
        if name.split(".")[0] == "tfprune"
    ]


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tfprune"


def test_each_subpackage_imports_only_the_ones_below_it():
    wrong = []
    for module in MODULES:
        layer = layer_of(module)
        if layer in WHOLE or module == "tfprune":
            continue
        for name, line, _ in tfprune_imports(module):
            target = layer_of(name)
            if target != layer and target not in BELOW[layer]:
                wrong.append(
                    f"{module}:{line} imports {name} ({layer} may import "
                    f"{sorted(BELOW[layer]) or 'nothing'})"
                )
    assert not wrong, "\n".join(wrong)


def test_every_module_belongs_to_a_known_subpackage():
    assert {layer_of(m) for m in MODULES} == set(BELOW) | WHOLE | {"tfprune"}


def find_cycle(graph):
    """A cycle of `graph` (dict node -> set of nodes) as a list, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def module_graph():
    return {
        m: {name for name, _, _ in tfprune_imports(m) if name in MODULES and name != m}
        for m in MODULES
    }


def test_no_import_cycle_between_modules():
    assert find_cycle(module_graph()) is None


def test_no_import_cycle_between_subpackages():
    packages = {}
    for module, targets in module_graph().items():
        if module == "tfprune":
            continue
        packages.setdefault(layer_of(module), set()).update(
            layer_of(t) for t in targets if layer_of(t) != layer_of(module)
        )
    assert find_cycle(packages) is None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_only_cli_and_demo_import_tfprune_as_a_whole():
    whole = [
        f"{module}:{line}"
        for module in MODULES
        for name, line, _ in tfprune_imports(module)
        if name == "tfprune" and layer_of(module) not in WHOLE and module != "tfprune"
    ]
    assert not whole, whole


def defined_names(tree) -> set:
    """Every name a module defines: functions, classes, variables, arguments, attributes it sets."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


# Public, documented standard-library API despite the underscore.
DOCUMENTED_UNDERSCORED = {"_exit"}  # os._exit


def private_uses(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    own = defined_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfprune"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield node.lineno, f"imports {alias.name} from {node.module}"
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            name = node.attr
            if (
                name.startswith("_")
                and not name.startswith("__")
                and name not in own | DOCUMENTED_UNDERSCORED
            ):
                yield node.lineno, f"uses .{name}, defined in another module"


SOURCES = (
    sorted(PACKAGE.rglob("*.py"))
    + sorted((ROOT / "tests").rglob("*.py"))
    + sorted((ROOT / "tools").rglob("*.py"))
)
SOURCES += [ROOT / "tfprune_cli.py", *sorted((ROOT / "examples").rglob("*.py"))]
INTERNALS = PACKAGE / "core" / "keras_internals.py"


def test_no_private_name_crosses_a_module():
    found = [
        f"{path.relative_to(ROOT)}:{line} {what}"
        for path in SOURCES
        if path != INTERNALS
        for line, what in private_uses(path)
    ]
    assert not found, "\n".join(found)


def test_private_name_check_catches_both_forms(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "from tfprune.masking.ranking import _secret\nx = model._loss_tracker\nself._mine = 1\ny "
        "= self._mine\n"
    )
    assert [line for line, _ in private_uses(source)] == [1, 2]


def test_keras_src_is_used_in_keras_internals_only():
    allowed = {
        INTERNALS,
        ROOT / "tests" / "core" / "test_keras_internals.py",
        pathlib.Path(__file__).resolve(),
    }
    users = [
        str(p.relative_to(ROOT))
        for p in SOURCES
        if p not in allowed and "keras.src" in p.read_text()
    ]
    assert not users, users


def tensorflow_imports(module):
    return [
        (name, line, top)
        for name, line, top in imports(TREES[module], module)
        if name.split(".")[0] == "tensorflow"
    ]


def test_tensorflow_is_imported_only_where_needed_and_one_way():
    importers = {m for m in MODULES if tensorflow_imports(m)}
    assert importers == TENSORFLOW_MODULES
    for module in importers:
        for node in ast.walk(TREES[module]):
            if isinstance(node, ast.Import) and any(a.name == "tensorflow" for a in node.names):
                assert [(a.name, a.asname) for a in node.names] == [("tensorflow", "tf")], module
        assert all(top for _, _, top in tensorflow_imports(module)), (
            f"{module} imports TensorFlow inside a function"
        )


def loaded_by(module) -> set:
    """Every tfprune module that importing `module` runs (package inits included; the
    top-level `tfprune/__init__.py` loads its names on first use, `_EAGER` below)."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run first
        todo += [name for name, _, top in tfprune_imports(current) if top and name in MODULES]
    return seen


@pytest.mark.parametrize("module", CORE_PATH)
def test_the_core_path_loads_no_tensorflow(module):
    assert not loaded_by(module) & TENSORFLOW_MODULES


def test_import_tfprune_loads_no_tensorflow_off_tensorflow():
    """What `tfprune/__init__.py` imports on JAX and PyTorch (its `_REGISTERING` modules),
    and the top level itself, reach no module that imports TensorFlow; on TensorFlow it
    imports everything. `test_backends.py` checks `sys.modules` under JAX."""
    (registering,) = [
        ast.literal_eval(node.value)
        for node in TREES["tfprune"].body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_REGISTERING"
    ]
    eager = {"tfprune", *(f"tfprune.{m}" for m in registering)}
    assert all(module in MODULES for module in eager)
    assert not set().union(*(loaded_by(m) for m in eager)) & TENSORFLOW_MODULES
