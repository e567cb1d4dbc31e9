"""The layer rule of the README, checked on every module's imports (read with ``ast``, nothing imported):
kernels <- autodiff, ops <- model <- training <- cli, commands, sweep, plots <- the package's fronts (gvae/__init__, gvae.torch, gvae.jax,
the short name gvae.posteriors); io stands apart (only itself, the standard
library and NumPy below it) and is used from training upwards. Nothing imports upward."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gvae"

# Layer of each top-level part of the package; a module may import its own layer and those below.
LAYERS = {"kernels": 0, "autodiff": 1, "ops": 1, "model": 2, "training": 3, "cli": 4, "commands": 4, "sweep": 4, "plots": 4, "posteriors": 5, "torch": 5, "jax": 5, "__init__": 5}
IO_USERS = {"training", "cli", "commands", "sweep", "plots", "__init__"}


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
    """Every gvae module that ``path`` imports, as a dotted name."""
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
            if node.module is None or target == "gvae":  # "from . import x": each name is a module
                out += [f"{target}.{a.name}" for a in node.names]
            else:
                out.append(target)
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_upward(path):
    src = _part(_module_name(path))
    for target in _imports(path):
        dst = _part(target)
        if dst == "__version__":
            continue
        if dst == "io":
            assert src == "io" or src in IO_USERS, f"{path.name} (layer {src}) imports {target}: io is used from training up"
            continue
        assert src != "io", f"{path.name} is in gvae.io, which stands apart, but imports {target}"
        assert LAYERS[dst] <= LAYERS[src], f"{path.relative_to(PACKAGE)} (layer {src}) imports {target} (layer {dst}) above it"


def test_the_rule_is_checked_on_real_imports():
    """The checker sees relative imports at every depth (else the test above could pass vacuously)."""
    found = {t for p in MODULES for t in _imports(p)}
    for expected in ("gvae.kernels.backend", "gvae.ops", "gvae.model.gaussian", "gvae.training.config",
                     "gvae.io.files", "gvae.kernels.jit"):
        assert any(t == expected or t.startswith(expected + ".") for t in found), expected
