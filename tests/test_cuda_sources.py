"""CPU-only checks of the CUDA side (no CuPy, no GPU): every kernel registered for the CPU has a CUDA twin
registered under the same name, next to it; every CUDA module is loaded by the backend; every ``.cu`` file
is declared, and every kernel a module fetches is one it declares; the compile check imports without
CuPy. The sources are read with ``ast``, never imported for these checks."""
import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "gvae" / "kernels"


def _parse(path):
    return ast.parse(path.read_text(), filename=str(path))


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
    """[(cu file name, [(pattern, literal or None)])] of the ``CudaSource(...)`` calls in the file: string
    literals and f-strings (inside list comprehensions, say), f-strings read as patterns."""
    found = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "CudaSource":
            root = node.args[1]
            inner = {id(v) for j in ast.walk(root) if isinstance(j, ast.JoinedStr) for v in j.values}
            exprs = [_pattern(e) for e in ast.walk(root)
                     if isinstance(e, (ast.Constant, ast.JoinedStr)) and id(e) not in inner]
            found.append((node.args[0].value, [e for e in exprs if e]))
    return found


def _pattern(e):
    """(regex, literal or None) for a string literal or an f-string, whose formatted parts match anything."""
    if isinstance(e, ast.Constant):
        return (re.escape(e.value), e.value) if isinstance(e.value, str) else None
    if isinstance(e, ast.JoinedStr):
        return "".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in e.values), None
    return None


def _matches(fetched, declared):
    (fp, flit), (dp, dlit) = fetched, declared
    return (fp == dp or (flit is not None and re.fullmatch(dp, flit) is not None)
            or (dlit is not None and re.fullmatch(fp, dlit) is not None))


def _fetched(path):
    """(pattern, literal) of the name expressions passed to ``SOURCE.function(...)`` in the file."""
    out = []
    for node in ast.walk(_parse(path)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "function"
                and node.args):
            out.append(_pattern(node.args[0]))
    return [p for p in out if p]


def _cuda_modules():
    for node in ast.walk(_parse(KERNELS / "backend.py")):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_CUDA_MODULES" for t in node.targets):
            return [ast.literal_eval(node.value)][0]
    raise AssertionError("backend.py does not assign _CUDA_MODULES")


CPU_FILES = sorted(KERNELS.glob("*_cpu.py"))
CUDA_FILES = sorted(KERNELS.glob("*_cuda.py"))


def test_every_cpu_kernel_has_a_cuda_twin_next_to_it():
    cuda_names = {}
    for path in CUDA_FILES:
        for name, device in _registered(path).items():
            assert device == "cuda", f"{path.name} registers {name!r} for {device!r}"
            cuda_names[name] = path.name
    missing = []
    for path in CPU_FILES:
        cpu = {n for n, d in _registered(path).items() if d == "cpu"}
        if not cpu:
            continue  # helpers (vecmath_cpu)
        twin = path.name.replace("_cpu.py", "_cuda.py")
        for name in sorted(cpu):
            if name not in cuda_names:
                missing.append(f"{name} ({path.name})")
            elif cuda_names[name] != twin:
                missing.append(f"{name} is registered in {cuda_names[name]}, expected beside it in {twin}")
    assert not missing, "CPU kernels without a CUDA twin: " + ", ".join(missing)


def test_backend_loads_every_cuda_module():
    listed = set(_cuda_modules())
    present = {f"gvae.kernels.{p.stem}" for p in CUDA_FILES}
    assert listed == present, f"_CUDA_MODULES {sorted(listed)} != the *_cuda.py modules {sorted(present)}"


def test_every_cu_file_is_declared_and_every_fetched_kernel_is_declared():
    declared = {}
    for path in CUDA_FILES:
        sources = _cuda_sources(path)
        assert sources, f"{path.name} declares no CudaSource"
        for filename, exprs in sources:
            assert (KERNELS / filename).exists(), f"{path.name} declares missing {filename}"
            assert filename == path.name.replace("_cuda.py", ".cu"), f"{filename} is not beside {path.name}"
            assert exprs, f"{path.name} declares no kernel of {filename}"
            declared[filename] = exprs
            text = (KERNELS / filename).read_text()
            for pattern, _ in exprs:
                name = re.match(r"\w+", pattern).group(0)
                assert re.search(rf"__global__\s+void\s+{name}\s*\(", text), f"{filename} has no kernel {name}"
        all_declared = [e for _, es in sources for e in es]
        fetched = _fetched(path)
        assert fetched, f"{path.name} fetches no kernel"
        for f in fetched:
            assert any(_matches(f, d) for d in all_declared), \
                f"{path.name} fetches {f[1] or f[0]!r}, which its CudaSource does not declare"
    assert {p.name for p in KERNELS.glob("*.cu")} == set(declared), "a .cu file no *_cuda.py module declares"


def test_compile_check_imports_without_cupy():
    mod = importlib.import_module("gvae.kernels.cuda_compile_check")
    assert callable(mod.main)
    # in a fresh interpreter: collecting the declarations must not import CuPy
    code = ("import sys; import gvae.kernels.cuda_compile_check as c; s = c.declared_sources(); "
            "assert 'cupy' not in sys.modules, 'CuPy was imported'; print(len(s))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=KERNELS.parents[1])
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(list(KERNELS.glob("*.cu")))


def test_sources_compile_with_nvrtc_when_available():
    """The same compilation cupy.RawModule performs (NVRTC, the declared name expressions): needs CuPy
    and the NVRTC library, not a GPU; skipped where they are missing."""
    pytest.importorskip("cupy")
    from gvae.kernels import cuda_compile_check as c
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
