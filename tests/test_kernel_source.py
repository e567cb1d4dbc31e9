"""The Numba CPU kernels assign no array to a slice of another (``a[i:j] = b[k:l]``): Numba then compiles its
check that the two shapes agree, whose error message's formatting of the shapes took 6 s to compile on a
cold cache (docs/notes/2026-11-performance-compilation.md); a loop copies the items instead. A constant
(``a[:] = 0.0``, ``np.nan``) broadcast into a slice compiles no such check. Read with ``ast``; nothing is
imported."""
import ast
import pathlib

import pytest

KERNELS = pathlib.Path(__file__).resolve().parent.parent / "gvae" / "kernels"
SOURCES = sorted(KERNELS.rglob("*.py"))


def _constant(node):
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) or ast.unparse(node) in ("np.nan", "np.inf", "math.nan", "math.inf")


def _slices_assigned(tree):
    """The lines, in functions decorated with a jit or a template, where a value that is not a constant is
    assigned to a subscript with a slice in it."""
    lines = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        if not any("jit" in ast.unparse(d) or "template" in ast.unparse(d) for d in fn.decorator_list):
            continue
        for node in ast.walk(fn):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AugAssign) else []
            for target in targets:
                sliced = isinstance(target, ast.Subscript) and any(
                    isinstance(part, ast.Slice) or (isinstance(part, ast.Constant) and part.value is Ellipsis)
                    for part in ast.walk(target.slice))
                if sliced and not _constant(node.value):
                    lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(KERNELS)))
def test_no_kernel_assigns_an_array_to_a_slice(path):
    lines = _slices_assigned(ast.parse(path.read_text(), filename=str(path)))
    assert not lines, f"{path.relative_to(KERNELS)} assigns an array to a slice in a kernel (lines {lines}): copy in a loop"


def test_the_check_sees_what_it_looks_for():
    """Planted faults are found, constants and code outside kernels are not (else the test above could pass
    vacuously)."""
    planted = ast.parse(
        "@jit\ndef f(a, b):\n    a[:] = b[1:]\n    a[...] = b\n    a[0, :2] += b[:2]\n    a[:] = 0.0\n"
        "    a[1:] = -np.inf\n    a[0] = b[0]\n\n"
        "@template(error_model='numpy')\ndef g(a, b):\n    a[2:] = b\n\n"
        "def h(a, b):\n    a[:] = b\n")
    assert _slices_assigned(planted) == [3, 4, 5, 12]
    assert any(p.name == "sparse_rows_cpu.py" for p in SOURCES)
