"""The layers above the kernels use the kernels' face alone (gvae/kernels/__init__.py, and the public
modules beside it): no module above imports a runtime's own modules (gvae.kernels.cpu, gvae.kernels.cuda)
or CuPy, and none tells devices apart by comparing a device's name; the capture, the threads, the blocks,
the plans and the compilation cache are asked of the face. Read with ``ast``; nothing is imported. The
front ends (gvae.torch, gvae.jax) are left out: they meet PyTorch's and JAX's own devices, whose names
they read, and hand those libraries' CUDA buffers and streams to CuPy."""
import ast

import pytest

from tests.test_layers import MODULES, PACKAGE, _imports, _module_name, _part

FRONT_ENDS = {"torch", "jax"}
UPPER = [p for p in MODULES if _part(_module_name(p)) not in {"kernels", *FRONT_ENDS}]


def _device_name_tests(tree):
    """The lines where a name "cpu" or "cuda" is compared with (==, !=, in)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in ("cpu", "cuda"):
                    lines.append(node.lineno)
    return lines


def _cupy_imports(tree):
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in ("cupy", "cupyx")]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in ("cupy", "cupyx"):
            found.append(node.module)
    return found


@pytest.mark.parametrize("path", UPPER, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_upper_floors_use_the_kernels_face(path):
    inner = [t for t in _imports(path) if t.startswith(("gvae.kernels.cpu", "gvae.kernels.cuda"))]
    assert not inner, f"{path.relative_to(PACKAGE)} imports a runtime's own modules: {inner}; use gvae.kernels"
    tree = ast.parse(path.read_text(), filename=str(path))
    assert not _cupy_imports(tree), f"{path.relative_to(PACKAGE)} imports CuPy: only gvae.kernels may"
    lines = _device_name_tests(tree)
    assert not lines, f"{path.relative_to(PACKAGE)} compares a device's name (lines {lines}); ask gvae.kernels"


def test_the_checks_see_what_they_look_for():
    """Each check finds its fault when planted (else the test above could pass vacuously)."""
    planted = ast.parse('import cupy\nfrom cupyx import empty_pinned\nif device == "cuda" or "cpu" != d:\n    pass\n')
    assert _cupy_imports(planted) == ["cupy", "cupyx"] and _device_name_tests(planted) == [3, 3]
    assert any(p.name == "trainer.py" for p in UPPER) and not any(_part(_module_name(p)) == "kernels" for p in UPPER)
