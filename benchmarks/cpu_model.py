"""The CPU a benchmark ran on, for the first line of its table (timings mean little without it)."""
import os
import platform


def cpu_model():
    """The CPU's model name with its family/model numbers and vector width (x86 /proc/cpuinfo), the cores
    this process may use and the caches, else platform's guess."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown CPU"
    flags = fields.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}, {simd}{_caches()}); {usable} of {os.cpu_count()} cores usable")


def _caches():
    """", L2 1 MiB, L3 32 MiB" from sysfs (cpu0's unified caches), or "" where sysfs does not say."""
    said = []
    for index in range(8):
        folder = f"/sys/devices/system/cpu/cpu0/cache/index{index}"
        try:
            with open(f"{folder}/level") as f:
                level = f.read().strip()
            with open(f"{folder}/type") as f:
                kind = f.read().strip()
            with open(f"{folder}/size") as f:
                size = f.read().strip()
        except OSError:
            break
        if kind == "Unified":
            said.append(f"L{level} {_size(size)}")
    return "".join(", " + s for s in said)


def _size(text):
    """sysfs's "1024K" or "32M" as "1 MiB" or "32 MiB"; anything else as it is."""
    number, unit = text[:-1], text[-1:]
    if not number.isdigit() or unit not in ("K", "M"):
        return text
    kib = int(number) * (1024 if unit == "M" else 1)
    return f"{kib // 1024} MiB" if kib % 1024 == 0 else f"{kib} KiB"


def blas_kernels():
    """"SkylakeX kernels" (the kernels the OpenBLAS NumPy loaded chose, gvae.kernels.cpu.blas.core), with what
    in the environment forced them: OPENBLAS_CORETYPE overrides OpenBLAS's own choice (some machines set
    it: Haswell's AVX2 kernels on a Zen 5 multiply at half the speed of its AVX-512 ones)."""
    from gvae.kernels.cpu import blas
    core = blas.core()
    said = f"{core} kernels" if core else "kernels not known"
    forced = [f"{name}={os.environ[name]}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if name in os.environ]
    return said + (f", set by {' '.join(forced)}" if forced else "")
