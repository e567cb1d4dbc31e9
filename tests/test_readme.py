"""What the README promises about installing gvae, and what its PyTorch and JAX blocks print."""
import ast
import contextlib
import io
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def install_section():
    return README[README.index("## Set up"):README.index("## Train on MNIST")]


def setup_call():
    """The keyword arguments of setup.py's setup() call, as AST nodes."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return {k.arg: k.value for k in call.keywords}


def test_the_install_section_shows_the_plain_install_and_every_extra():
    section = install_section()
    assert re.search(r"^pip install -e \. ", section, re.M), "the install to train, without the tests' 1.9 GB"
    assert 'pip install -e ".[test]"' in section
    extras = [key.value for key in setup_call()["extras_require"].keys]
    assert {"torch", "jax", "plot", "dask", "bench", "cuda12", "cuda13", "test"} <= set(extras)
    for extra in extras:
        assert f"`{extra}`" in section, f"the extra {extra} is not listed"


def test_the_license_is_mit_and_shipped():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the gvae developers\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    call = setup_call()
    assert call["license"].value == "MIT" and [e.value for e in call["license_files"].elts] == ["LICENSE"]


def test_the_install_section_says_what_to_do_beside_a_folder_named_gvae(tmp_path):
    """An editable install's finder comes after the folders on the path, so a folder named gvae where a script
    starts is imported instead (an empty namespace package); a package found on the path, as a strict editable
    install or a plain install puts it, wins over that folder."""
    section = " ".join(install_section().split())
    assert "a folder named `gvae`" in section and "pip install -e . --config-settings editable_mode=strict" in section
    (tmp_path / "gvae").mkdir()
    script = f"import sys; sys.path.append({str(REPO)!r}); import gvae; print(gvae.__file__)"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(REPO / "gvae" / "__init__.py"), done.stderr


def numbers_and_text(line):
    """(the numbers in ``line``, the line with each number replaced by #)."""
    pattern = r"-?\d+(?:\.\d+)?"
    return [float(v) for v in re.findall(pattern, line)], re.sub(pattern, "#", line)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_the_readme_blocks_print_what_they_say(name):
    pytest.importorskip(name)
    code = re.search(rf"<!-- the block below runs in tests/test_{name}_distribution.py -->\n```python\n(.*?)```",
                     README, re.S).group(1)
    said = re.search(r"^# prints: (.*)$", code, re.M).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    (values, text), (expected, expected_text) = numbers_and_text(printed.getvalue().strip()), numbers_and_text(said)
    assert text == expected_text and len(values) == len(expected)
    # the digits shown, up to rounding in the kernels' float32 sums (the order of their threads' parts)
    assert all(math.isclose(v, e, rel_tol=1e-3) for v, e in zip(values, expected)), (printed.getvalue(), said)
