"""Docstrings follow one standard (Keras' own): every public function and class says what
it does, its arguments (with their defaults), what it returns and raises, and shows a short
example, which either runs as a doctest or is a ```python block. Papers are cited by title
and arXiv id, never by a file users do not have."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tfprune"
# Methods that Keras calls and documents itself.
KERAS_HOOKS = {"call", "build", "get_config", "from_config", "compute_output_shape", "train_step"}
KERAS_HOOKS |= {f"on_{event}" for event in ("train_begin", "train_end", "epoch_begin", "epoch_end")}
KERAS_HOOKS |= {"on_train_batch_begin", "on_train_batch_end", "compute_loss"}
# Module-level code that is not part of the API: the demo script and the command line.
SCRIPTS = {PACKAGE / "demo.py", PACKAGE / "cli.py"}


def _classes():
    """`{class name: (base names, {method name: documented})}` over the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [getattr(b, "id", getattr(b, "attr", None)) for b in node.bases]
                methods = {
                    item.name: bool(ast.get_docstring(item))
                    for item in node.body
                    if isinstance(item, ast.FunctionDef)
                }
                found[node.name] = (bases, methods)
    return found


CLASSES = _classes()


def documented_in_a_base(owner, name, seen=()) -> bool:
    """Whether a base class of `owner` (in tfprune) documents the method it overrides."""
    for base in CLASSES.get(owner, ((), {}))[0]:
        if base in seen or base not in CLASSES:
            continue
        if CLASSES[base][1].get(name) or documented_in_a_base(base, name, (*seen, base)):
            return True
    return False


def public_definitions():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in SCRIPTS:
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                yield path, node, None
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                            yield path, item, node


def arguments(function) -> list:
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return [n for n in names if n not in ("self", "cls")]


def returns_value(function) -> bool:
    for node in ast.walk(function):
        if isinstance(node, (ast.Return, ast.Yield)) and getattr(node, "value", None) is not None:
            return True
    return False


def problems(path, node, owner):
    where = f"{path.relative_to(ROOT)}:{node.lineno} {owner.name + '.' if owner else ''}{node.name}"
    doc = ast.get_docstring(node)
    if owner and (node.name in KERAS_HOOKS or documented_in_a_base(owner.name, node.name)):
        return []
    if not doc:
        return [f"{where}: no docstring"]
    found = []
    is_property = any(
        getattr(d, "id", None) == "property" for d in getattr(node, "decorator_list", [])
    )
    if isinstance(node, ast.FunctionDef) and not is_property:
        documented = owner is None or len(doc.splitlines()) > 1
        if arguments(node) and documented and "Args:" not in doc:
            found.append(f"{where}: no Args section")
        if returns_value(node) and documented and "Returns:" not in doc and "Yields:" not in doc:
            found.append(f"{where}: no Returns section")
    if owner is None and "Example" not in doc:
        found.append(f"{where}: no example")
    if "PAPERS.md" in doc:
        found.append(f"{where}: cites PAPERS.md, which users do not have")
    return found


def test_public_functions_and_classes_follow_the_docstring_standard():
    found = [p for path, node, owner in public_definitions() for p in problems(path, node, owner)]
    assert not found, f"{len(found)} problems:\n" + "\n".join(found)


def test_no_module_cites_a_file_users_do_not_have():
    cited = [
        str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "PAPERS.md" in p.read_text()
    ]
    assert not cited, cited


def test_every_args_entry_of_a_defaulted_argument_says_its_default():
    missing = []
    for path, node, _ in public_definitions():
        doc = ast.get_docstring(node) or ""
        function = (
            node
            if isinstance(node, ast.FunctionDef)
            else next(
                (
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__"
                ),
                None,
            )
        )
        if function is None or "Args:" not in doc:
            continue
        args = function.args
        positional = args.posonlyargs + args.args
        defaulted = [a.arg for a in positional[len(positional) - len(args.defaults) :]]
        defaulted += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        section = doc.split("Args:", 1)[1].split("\n\n", 1)[0]
        entries = {}
        current = None
        for line in section.splitlines():
            stripped = line.strip()
            head = stripped.split(":", 1)[0]
            if line.startswith("    ") and not line.startswith("        ") and ":" in stripped:
                current = head
                entries[current] = stripped
            elif current:
                entries[current] += " " + stripped
        for name in defaulted:
            text = next(
                (v for k, v in entries.items() if name in [n.strip() for n in k.split(",")]), None
            )
            if text is not None and "Default" not in text:
                missing.append(f"{path.relative_to(ROOT)}:{function.lineno} {node.name}({name})")
    assert not missing, f"{len(missing)} arguments:\n" + "\n".join(missing)
