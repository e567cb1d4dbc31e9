"""CPU-only checks of the CUDA side (no CuPy, no GPU), over gvae/kernels and its subfolders: every kernel
registered for the CPU in ``NAME_cpu.py`` has a CUDA twin registered under the same name in the
``NAME_cuda.py`` beside it (and the reverse); the backend lists every CUDA module; every ``.cu`` file is
declared by exactly one module, the one beside it with the same base name, and every kernel a module
fetches is one it declares; the CUDA modules import without Numba, CuPy or a ``*_cpu.py`` module; the
activation enum comes from the Python table. The structure is read with ``ast``."""
import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "gvae" / "kernels"
TOOL = ROOT / "tools" / "cuda_compile_check.py"
CPU_FILES = sorted(KERNELS.rglob("*_cpu.py"))
CUDA_FILES = sorted(KERNELS.rglob("*_cuda.py"))
CU_FILES = sorted(p.relative_to(KERNELS).as_posix() for p in KERNELS.rglob("*.cu"))


def _parse(path):
    return ast.parse(path.read_text(), filename=str(path))


def _rel(path):
    return path.relative_to(KERNELS).as_posix()


def _registered(path):
    """{name: device} for every ``register("name"[, "device"])`` call in the file."""
    out = {}
    for node in ast.walk(_parse(path)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "register"
                and node.args and isinstance(node.args[0], ast.Constant)):
            device = "cpu"
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                device = node.args[1].value
            for kw in node.keywords:
                if kw.arg == "device" and isinstance(kw.value, ast.Constant):
                    device = kw.value.value
            out[node.args[0].value] = device
    return out


def _cuda_sources(path):
    """[(cu path, [(pattern, literal or None)])] of the ``CudaSource(...)`` calls in the file: string
    literals and f-strings (inside list comprehensions, say) of its expressions argument."""
    found = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "CudaSource":
            root = node.args[1]
            inner = {id(v) for j in ast.walk(root) if isinstance(j, ast.JoinedStr) for v in j.values}
            # what a comprehension iterates over (("false", "true"), say) is not an expression
            inner |= {id(n) for c in ast.walk(root) if isinstance(c, ast.comprehension)
                      for part in (c.iter, *c.ifs) for n in ast.walk(part)}
            exprs = [p for e in ast.walk(root) if id(e) not in inner for p in _patterns(e)]
            found.append((node.args[0].value, exprs))
    return found


def _patterns(e):
    """[(regex, literal or None)] that a string literal or an f-string can produce: a formatted part
    ``{'a' if c else 'b'}`` gives one entry per branch, any other formatted part matches anything."""
    if isinstance(e, ast.Constant):
        return [(re.escape(e.value), e.value)] if isinstance(e.value, str) else []
    if not isinstance(e, ast.JoinedStr):
        return []
    out = [("", "")]
    for v in e.values:
        if isinstance(v, ast.Constant):
            parts = [(re.escape(v.value), v.value)]
        elif (isinstance(v.value, ast.IfExp) and isinstance(v.value.body, ast.Constant)
              and isinstance(v.value.orelse, ast.Constant)):
            parts = [(re.escape(str(b.value)), str(b.value)) for b in (v.value.body, v.value.orelse)]
        else:
            parts = [(".+", None)]
        out = [(p + q, None if lit is None or ql is None else lit + ql) for p, lit in out for q, ql in parts]
    return out


def _matches(fetched, declared):
    (fp, flit), (dp, dlit) = fetched, declared
    # two patterns: the fetched one with "0" for each formatted part is an instance the declared one must match
    sample = re.sub(r"\\(.)", r"\1", fp.replace(".+", "0"))
    return (fp == dp or (flit is not None and re.fullmatch(dp, flit) is not None)
            or (dlit is not None and re.fullmatch(fp, dlit) is not None) or re.fullmatch(dp, sample) is not None)


def _fetched(path):
    """(pattern, literal) of the name expressions passed to ``SOURCE.function(...)`` in the file."""
    return [p for node in ast.walk(_parse(path))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "function"
            and node.args for p in _patterns(node.args[0])]


def _calls_cupy(path):
    """Whether every function the file registers calls a ``cupy.*`` function."""
    funcs = [node for node in ast.walk(_parse(path)) if isinstance(node, ast.FunctionDef)
             and any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "register" for d in node.decorator_list)]
    return bool(funcs) and all(
        any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and isinstance(c.func.value, ast.Name)
            and c.func.value.id == "cupy" for c in ast.walk(f)) for f in funcs)


def _compile_check():
    """tools/cuda_compile_check.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("cuda_compile_check", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_layout_is_seen():
    # guards the globs below: a layout change that hid the files would make every other test vacuous
    expected = {"activation.cu", "band/substitution.cu", "band/product.cu", "band/logdet.cu", "band/trace.cu"}
    assert expected <= set(CU_FILES)
    assert KERNELS / "band" / "trace_cuda.py" in CUDA_FILES and KERNELS / "band" / "trace_cpu.py" in CPU_FILES


def _twin_problems(path, device, twin_suffix):
    """What is wrong with the kernels ``path`` registers: a device other than ``device``, or a name that
    the file beside it with the same base name and ``twin_suffix`` does not register."""
    mine = _registered(path)
    problems = [f"{_rel(path)} registers {n!r} for {d!r}" for n, d in mine.items() if d != device]
    twin = path.with_name(path.name.replace(f"_{device}.py", twin_suffix))
    theirs = _registered(twin) if twin.exists() else {}
    return problems + [f"{n} ({_rel(path)}) has no twin in {_rel(twin)}" for n in sorted(set(mine) - set(theirs))]


def test_every_cpu_kernel_has_a_cuda_twin_beside_it():
    problems = [p for path in CPU_FILES for p in _twin_problems(path, "cpu", "_cuda.py")]
    problems += [p for path in CUDA_FILES for p in _twin_problems(path, "cuda", "_cpu.py")]
    assert not problems, "\n".join(problems)


def test_backend_lists_every_cuda_module():
    from gvae.kernels import backend
    present = sorted("gvae.kernels." + ".".join(p.relative_to(KERNELS).with_suffix("").parts) for p in CUDA_FILES)
    assert sorted(backend.cuda_modules()) == present


def test_every_cu_file_is_declared_once_beside_its_module_and_every_fetched_kernel_is_declared():
    declared = {}
    for path in CUDA_FILES:
        sources = _cuda_sources(path)
        if not sources:
            # A helper module (band/common_cuda.py) launches nothing; a module whose kernels are CuPy's own
            # library calls (matmul_cuda.py: cuBLAS) registers them and fetches nothing.
            assert not _fetched(path), f"{_rel(path)} launches kernels of no CudaSource"
            assert not _registered(path) or _calls_cupy(path), f"{_rel(path)} registers kernels that launch nothing"
            continue
        for filename, exprs in sources:
            expected = _rel(path).replace("_cuda.py", ".cu")
            assert filename == expected, f"{_rel(path)} declares {filename}, expected {expected} beside it"
            assert (KERNELS / filename).exists(), f"{_rel(path)} declares missing {filename}"
            assert filename not in declared, f"{filename} is declared by {declared[filename][0]} and {_rel(path)}"
            assert exprs, f"{_rel(path)} declares no kernel of {filename}"
            declared[filename] = (_rel(path), exprs)
            text = (KERNELS / filename).read_text()
            for pattern, _ in exprs:
                name = re.match(r"\w+", pattern).group(0)
                assert re.search(rf"__global__\s+void\s+{name}\s*\(", text), f"{filename} has no kernel {name}"
        all_declared = [e for _, es in sources for e in es]
        fetched = _fetched(path)
        assert fetched, f"{_rel(path)} fetches no kernel"
        for f in fetched:
            assert any(_matches(f, d) for d in all_declared), \
                f"{_rel(path)} fetches {f[1] or f[0]!r}, which its CudaSource does not declare"
    assert sorted(declared) == CU_FILES, "a .cu file no *_cuda.py module declares"


def test_cuda_modules_need_neither_numba_nor_cupy():
    """In a fresh interpreter where ``import numba`` and ``import cupy`` fail, the compile check collects
    every declaration and every source's text. The package ``__init__`` files (which load the Numba
    kernels of the front functions) are bypassed, so what is tested is what the ``*_cuda.py`` modules,
    gvae.kernels.cuda.build and the compile check import themselves: a ``*_cpu.py`` module, or Numba, fails it."""
    code = f"""
import importlib.util, json, sys, types
from pathlib import Path
root = Path({str(ROOT)!r})
for init in sorted((root / "gvae").rglob("__init__.py")):
    name = ".".join(init.parent.relative_to(root).parts)
    package = types.ModuleType(name)
    package.__path__ = [str(init.parent)]
    sys.modules[name] = package
sys.modules["numba"] = None  # import numba -> ImportError
sys.modules["cupy"] = None
spec = importlib.util.spec_from_file_location("cuda_compile_check", root / "tools" / "cuda_compile_check.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
sources = tool.declared_sources()
texts = {{name: len(source.text()) for name, source in sources.items()}}
cpu = sorted(m for m in sys.modules if m.endswith("_cpu"))
assert not cpu, f"the CUDA path imported {{cpu}}"
print(json.dumps(sorted(texts)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == CU_FILES


def test_compile_check_finds_the_sources_in_subfolders():
    tool = _compile_check()
    assert callable(tool.main)
    assert tool.cu_files() == CU_FILES
    assert sorted(tool.declared_sources()) == CU_FILES


def test_source_text_pastes_each_header_once_and_points_at_the_real_files():
    from gvae.kernels.cuda import build
    tool = _compile_check()
    for filename, source in tool.declared_sources().items():
        text = source.text()
        assert not re.search(r'^\s*#\s*include\s+"', text, re.MULTILINE), f"{filename}: an include is left"
        assert text.count("#define GVAE_CUDA_COMMON_CUH") == 1, filename
        assert f'#line 1 "{filename}"' in text
        if filename.startswith("band/"):  # band_common.cuh beside the file, cuda/common.cuh from the root
            assert text.count("#define GVAE_BAND_COMMON_CUH") == 1, filename
            assert '#line 1 "band/band_common.cuh"' in text and '#line 1 "cuda/common.cuh"' in text
        assert text == build.source_text(filename, source.prelude)


def test_activation_enum_is_generated_from_the_table():
    from gvae.kernels import activation_cuda
    from gvae.kernels.activations import ACTIVATIONS, CODES
    source = re.sub(r"//[^\n]*", "", (KERNELS / "activation.cu").read_text())  # code, not comments
    assert not re.search(r"\benum\s+Activation\b", source), "activation.cu lists the codes itself"
    enum = re.search(r"\benum\s+Activation\s*\{([^}]*)\}", activation_cuda.SOURCE.text())
    assert enum, "the generated enum is missing from the compiled text"
    members = dict(m.split(" = ") for m in enum.group(1).strip().split(", "))
    assert members == {name.upper(): str(code) for name, code in CODES.items()}
    for name in ACTIVATIONS:
        assert re.search(rf"struct\s+Act<T,\s*{name.upper()}>", source), f"no CUDA specialisation for {name}"


def test_sources_compile_with_nvrtc_when_available():
    """The same compilation cupy.RawModule performs (NVRTC, the declared name expressions): needs CuPy
    and the NVRTC library, not a GPU; skipped where they are missing."""
    pytest.importorskip("cupy")
    c = _compile_check()
    try:
        from cupy.cuda import nvrtc
    except Exception as exc:  # noqa: BLE001  (no NVRTC library)
        pytest.skip(f"NVRTC not usable here: {type(exc).__name__}: {exc}")
    arch = None
    for candidate in ("90", "80", "75"):  # the newest architecture this NVRTC knows
        try:
            prog = nvrtc.createProgram("__global__ void k() {}", "probe.cu", (), ())
            try:
                nvrtc.compileProgram(prog, (f"-arch=compute_{candidate}",))
            finally:
                nvrtc.destroyProgram(prog)
            arch = candidate
            break
        except Exception:  # noqa: BLE001  (library missing, or architecture unknown to it)
            continue
    if arch is None:
        pytest.skip("NVRTC not usable here")
    for filename, source in sorted(c.declared_sources().items()):
        for ct in c.FLOAT_TYPES:
            lowered = c.nvrtc_compile(source, ct, f"sm_{arch}")
            assert len(lowered) == len(source.expressions), filename
