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
    assert "`pip install -e .`" in section, "the install to train, without the tests' 1.9 GB"
    assert 'pip install -e ".[test]"' in section
    extras = [key.value for key in setup_call()["extras_require"].keys]
    assert {"torch", "jax", "plot", "dask", "bench", "cuda12", "cuda13", "test"} <= set(extras)
    for extra in extras:
        assert f"`{extra}`" in section, f"the extra {extra} is not listed"


def test_the_install_section_is_two_blocks_to_paste_whole_and_the_rest_is_troubleshooting():
    """The set-up block held an "or" and both test commands: pasted whole, it installed twice and ran the
    suite twice. Now: install (with its virtual environment) and test, one command each, the test command
    the one CI runs; what may go wrong comes after, under Troubleshooting."""
    section = install_section()
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks == ['python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]"\n',
                      "HYPOTHESIS_PROFILE=ci python -m pytest -q -n auto\n"], blocks
    assert (REPO / ".ci" / "run").read_text().splitlines()[-1] == blocks[1].strip()
    troubleshooting = section[section.index("### Troubleshooting"):]
    assert "a folder named `gvae`" in " ".join(troubleshooting.split())
    assert section.index("```bash") < section.index("### Troubleshooting") and "```" not in troubleshooting


def test_every_quick_start_command_says_how_long_it_took():
    """The quick start's second command ran 15 minutes unannounced: each says its time now, the evaluation is
    the shorter K = 500, and the papers' K = 5000 stands beside it with its estimate."""
    section = README[README.index("## Train on MNIST"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = block.splitlines()
    assert [c.split()[1] for c in commands] == ["train", "eval", "sample", "plot", "analyze", "plans"]
    for command in commands:
        assert re.search(r"# (\d+ min )?\d+ s\b", command), f"no time: {command}"
    assert "--iw-samples 500 " in block and "--iw-samples 5000" not in block
    text = " ".join(section[:section.index("## ", 3)].split())
    assert "`gvae eval runs/extgrid --iw-samples 5000` (an estimated " in text


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
@pytest.mark.parametrize("name", ["torch", "jax", "readme"])
def test_the_readme_blocks_print_what_they_say(name):
    """The PyTorch and JAX blocks, and the Python API's kernels and reverse mode, print what they say."""
    if name != "readme":
        pytest.importorskip(name)
    where = f"tests/test_{name}.py" if name == "readme" else f"tests/test_{name}_distribution.py"
    code = re.search(rf"<!-- the block below runs in {where} -->\n```python\n(.*?)```", README, re.S).group(1)
    said = re.search(r"^# prints: (.*)$", code, re.M).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    (values, text), (expected, expected_text) = numbers_and_text(printed.getvalue().strip()), numbers_and_text(said)
    assert text == expected_text and len(values) == len(expected)
    # the digits shown, up to rounding in the kernels' float32 sums (the order of their threads' parts)
    assert all(math.isclose(v, e, rel_tol=1e-3) for v, e in zip(values, expected)), (printed.getvalue(), said)
