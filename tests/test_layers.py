"""The layer rule of the README, checked on every module's imports (read with ``ast``, nothing imported):
kernels <- linalg (SciPy's banded functions) <- rules (the array-namespace formulas) <- autodiff, ops <- model <- training <- models (the literature models, one folder each, tasks included) <- evaluation <- process, plots <- the package's fronts (gvae/__init__, gvae.torch,
gvae.jax, the short name gvae.posteriors) <- sweep <- commands <- cli <- sweep_child, __main__ (the entry
points of a process on top: the commands use the sweep, the sweep names its child process only as a module
to run, ``python -m gvae`` runs the cli); io stands apart (only itself, the standard
library and NumPy below it) and is used by the CPU runtime's cache files and from training upwards. Nothing imports upward, and no modules
import each other in a circle, even within a layer (imports inside functions count: they tie the
modules as much)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gvae"

# Layer of each top-level part of the package; a module may import its own layer and those below.
LAYERS = {"kernels": 0, "linalg": 0.25, "rules": 0.5, "autodiff": 1, "ops": 1, "model": 2, "training": 3, "models": 3.25, "evaluation": 3.5,
          "process": 4, "plots": 4, "posteriors": 5,
          "torch": 5, "jax": 5, "numpyro": 5, "pyro": 5, "guide_layout": 4.5, "__init__": 5, "sweep": 6, "commands": 7, "cli": 8, "sweep_child": 9,
          "__main__": 9}
IO_USERS = {"kernels", "training", "models", "evaluation", "cli", "commands", "sweep", "plots", "__init__"}


def _part(module):
    """'gvae.model.vae' -> 'model'; 'gvae' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path):
    """Every gvae module that ``path`` imports, or name that it imports from one, as a dotted name."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "gvae"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gvae":
                continue
            # Each name may be a module ("from .sweep import commands") or a name in one: the dotted name
            # says which part it belongs to, and _graph takes the longest prefix that is a module.
            out += [f"{target}.{a.name}" for a in node.names]
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_upward(path):
    src = _part(_module_name(path))
    for target in _imports(path):
        dst = _part(target)
        if dst == "__version__":
            continue
        if dst == "io":
            assert src == "io" or src in IO_USERS, f"{path.name} (layer {src}) imports {target}: io is used by the CPU runtime and from training up"
            continue
        assert src != "io", f"{path.name} is in gvae.io, which stands apart, but imports {target}"
        assert LAYERS[dst] <= LAYERS[src], f"{path.relative_to(PACKAGE)} (layer {src}) imports {target} (layer {dst}) above it"


def test_the_rule_is_checked_on_real_imports():
    """The checker sees relative imports at every depth (else the test above could pass vacuously)."""
    found = {t for p in MODULES for t in _imports(p)}
    for expected in ("gvae.kernels.backend", "gvae.ops", "gvae.model.gaussian", "gvae.training.config",
                     "gvae.io.files", "gvae.kernels.cpu.jit"):
        assert any(t == expected or t.startswith(expected + ".") for t in found), expected


def _graph():
    """{module: the gvae modules it imports}: a name that is not a module (``from gvae import
    __version__``, ``from .kernels import matmul``) is its package's ``__init__``; a module's import of
    a package that contains it (its own package's ``__init__``, loaded before it anyway) is left out."""
    names = {_module_name(p): p for p in MODULES}
    graph = {}
    for name, path in names.items():
        edges = set()
        for target in _imports(path):
            while target not in names:
                target = target.rsplit(".", 1)[0]
            if not (name + ".").startswith(target + ".") and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _circles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_modules_import_each_other_in_a_circle():
    assert _circles(_graph()) == []


@pytest.mark.slow
def test_the_circle_check_finds_a_circle():
    """The cycle that ran through the command layer (cli -> commands -> sweep ... -> commands) is found
    when planted back into the real graph, as is a two-module one."""
    graph = _graph()
    planted = {**graph, "gvae.sweep.spec": graph["gvae.sweep.spec"] | {"gvae.commands"}}
    assert any({"gvae.commands", "gvae.sweep.spec"} <= set(c) for c in _circles(planted))
    assert _circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_the_cpu_runtime_is_the_floor_of_the_kernels():
    """gvae.kernels.cpu (threads, C entries, the Numba cache, BLAS control, tuning) sits under the kernels:
    its modules import nothing of gvae outside the runtime itself, but the careful file code of gvae.io
    (which stands apart), and no kernel module but the runtime imports gvae.io."""
    runtime = sorted((PACKAGE / "kernels" / "cpu").glob("*.py"))
    assert PACKAGE / "kernels" / "cpu" / "threads.py" in runtime
    for path in runtime:
        for target in _imports(path):
            assert target.startswith(("gvae.kernels.cpu.", "gvae.io.")) or target == "gvae.kernels.cpu", \
                f"{path.relative_to(PACKAGE)} imports {target}, outside the CPU runtime"
    for path in sorted((PACKAGE / "kernels").rglob("*.py")):
        if path.parent.name != "cpu":
            assert not any(t.startswith("gvae.io") for t in _imports(path)), \
                f"{path.relative_to(PACKAGE)} imports gvae.io: only the CPU runtime's cache files do"
