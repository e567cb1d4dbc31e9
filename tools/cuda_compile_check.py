"""Compile every CUDA source of gvae with ``nvcc``, for every kernel instantiation the runtime fetches.

    python tools/cuda_compile_check.py [--arch sm_90] [--nvcc PATH] [--nvrtc]

Run from the repository root; it checks the gvae that Python imports (this checkout once it is
installed with ``pip install -e .``, or with ``PYTHONPATH=.``) and says which one. Needs neither CuPy
nor a GPU (CI runs it wherever ``nvcc`` exists). The CUDA modules are the ones the backend loads
(``gvae.kernels.backend.cuda_modules()``, every ``*_cuda.py`` under gvae/kernels, subfolders included);
they import without CuPy and declare their sources through :class:`gvae.kernels.cuda.build.CudaSource`.
For each source and each float type a translation unit holds the very text the runtime hands to
``cupy.RawModule`` (``CudaSource.text()``: generated prelude, headers pasted in, ``#line`` directives
for the messages) and takes the address of every declared kernel, which makes nvcc instantiate and
compile each one (``--ptx``: device code only, no host compiler pass). One line per source; exit
status 1 with nvcc's message on any failure, or when a ``.cu`` file is declared by no module.

``--nvrtc`` also compiles each source through NVRTC with the very name expressions and options that
``cupy.RawModule`` uses at run time (this needs CuPy and the NVRTC library, still no GPU).
"""
import argparse
import concurrent.futures
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from gvae.kernels import backend
from gvae.kernels.cuda import build as cuda_build

FLOAT_TYPES = ("float", "double")


def declared_sources():
    """Import every CUDA module the backend loads; returns {path relative to gvae/kernels: CudaSource}."""
    for name in backend.cuda_modules():
        importlib.import_module(name)
    return dict(cuda_build.SOURCES)


def cu_files():
    """Every ``.cu`` file under gvae/kernels, as paths relative to it with ``/`` (the CudaSource names)."""
    found = []
    for folder, _, files in os.walk(cuda_build.HERE):
        rel = os.path.relpath(folder, cuda_build.HERE)
        found += [os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/") for f in files if f.endswith(".cu")]
    return sorted(found)


def instantiation_unit(source, ct):
    """``source``'s runtime text for C type ``ct`` followed by references to all its kernels."""
    refs = "\n".join(f"    (const void*)&{e}," for e in source.instantiations(ct))
    return (f"{source.text()}\n"
            f'#line 1 "<instantiations of {source.filename} for {ct}>"\n'
            f"// Taking each kernel's address instantiates it, as NVRTC's name expressions do.\n"
            f"extern const void* const gvae_instances[];\n"
            f"const void* const gvae_instances[] = {{\n{refs}\n}};\n")


def compile_unit(nvcc, arch, workdir, tag, text, kernels):
    """(ok, seconds, message) of ``nvcc --ptx`` on ``text``, which must yield ``kernels`` entry points."""
    cu = os.path.join(workdir, f"{tag}.cu")
    with open(cu, "w") as f:
        f.write(text)
    ptx = os.path.join(workdir, f"{tag}.ptx")
    cmd = [nvcc, "-std=c++17", f"-arch={arch}", "--ptx", "-o", ptx, cu]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    message = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return False, seconds, message
    with open(ptx) as f:
        entries = sum(1 for line in f if ".entry" in line)
    if entries < kernels:
        return False, seconds, f"{message}\nexpected {kernels} kernel entry points in the PTX, found {entries}"
    return True, seconds, message


def nvrtc_compile(source, ct, arch):
    """Compile ``source`` for C type ``ct`` as ``cupy.RawModule`` would (NVRTC, name expressions);
    returns the lowered names. Raises RuntimeError with NVRTC's log on failure."""
    from cupy.cuda import nvrtc
    exprs = source.instantiations(ct)
    prog = nvrtc.createProgram(source.text(), source.filename, (), ())
    try:
        for e in exprs:
            nvrtc.addNameExpression(prog, e)
        # CuPy adds -ftz=true and the architecture to the options it is given
        options = cuda_build.OPTIONS + ("-ftz=true", f"-arch=compute_{arch.split('_')[-1]}")
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as err:
            raise RuntimeError(f"{err}\n{nvrtc.getProgramLog(prog)}") from None
        return {e: nvrtc.getLoweredName(prog, e) for e in exprs}
    finally:
        nvrtc.destroyProgram(prog)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/cuda_compile_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="sm_90", help="nvcc -arch (default sm_90)")
    parser.add_argument("--nvcc", default=shutil.which("nvcc"), help="path of nvcc (default: on PATH)")
    parser.add_argument("--nvrtc", action="store_true", help="also compile through NVRTC (needs CuPy)")
    args = parser.parse_args(argv)
    if not args.nvcc:
        print("cuda_compile_check: nvcc not found (pass --nvcc PATH)", file=sys.stderr)
        return 2

    print(f"gvae CUDA sources in {cuda_build.HERE}")
    sources = declared_sources()
    files = cu_files()
    failures = 0
    jobs = {}
    with tempfile.TemporaryDirectory(prefix="gvae_cuda_check_") as workdir, \
            concurrent.futures.ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for name in files:
            src = sources.get(name)
            if src is None:
                continue
            for ct in FLOAT_TYPES:
                tag = f"{name[:-3].replace('/', '_')}_{ct}"
                jobs[name, ct] = pool.submit(compile_unit, args.nvcc, args.arch, workdir, tag,
                                             instantiation_unit(src, ct), len(src.expressions))
        for name in files:
            src = sources.get(name)
            if src is None:
                failures += 1
                print(f"FAIL {name}: no *_cuda.py module declares it (CudaSource), so nothing instantiates it")
                continue
            results = [(ct,) + jobs[name, ct].result() for ct in FLOAT_TYPES]
            bad = [(ct, msg) for ct, ok, _, msg in results if not ok]
            seconds = max(r[2] for r in results)
            count = len(src.expressions)
            if bad:
                failures += 1
                print(f"FAIL {name} ({', '.join(ct for ct, _ in bad)})")
                for ct, msg in bad:
                    print(f"--- nvcc, T = {ct} ---\n{msg}")
                continue
            warned = [msg for _, _, _, msg in results if msg]
            line = f"ok   {name:<22} {count:>2} kernels x (float, double)  nvcc {args.arch} {seconds:.1f} s"
            if args.nvrtc:
                try:
                    for ct in FLOAT_TYPES:
                        nvrtc_compile(src, ct, args.arch)
                    line += ", nvrtc ok"
                except Exception as err:  # noqa: BLE001  (any NVRTC or import failure is reported)
                    failures += 1
                    line = f"FAIL {name}: nvrtc\n{err}"
            print(line)
            for msg in warned:
                print(f"     nvcc said: {msg}")
    for name in sorted(set(sources) - set(files)):
        failures += 1
        print(f"FAIL {name}: declared by a *_cuda.py module but missing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
