"""The size check before a dense (n, n) view of a band factor (a precision, a covariance, the factor
itself), shared by the PyTorch and JAX front ends and the model's dense references.

Everything else on a band factor is O(n K); a dense view is O(n^2) in memory, and at n = 60,000 in
float64 one matrix is 28.8 GB. The operating system does not refuse such an allocation: it lends pages
until the out-of-memory killer ends the process, minutes later. So the bytes a dense view will hold at
once (its result and the temporaries its computation makes, counted by each caller from its own code)
are compared with the memory the machine has free *before* anything is allocated, and a view that cannot
fit is a ``ValueError`` naming the view, its shape and both sizes. Host memory only: an accelerator's
allocator refuses an allocation beyond its memory with an error of its own. Imports neither torch nor
jax."""
import math
import os

# Below this many bytes nothing is read: every machine gvae runs on has that much free, and reading
# /proc/meminfo would cost as much as a small dense view itself.
SMALL = 1 << 24


def free_memory():
    """Bytes of memory this machine can give a process now: MemAvailable of /proc/meminfo (free pages
    plus the caches the kernel can drop), else the free physical pages (sysconf); None where neither
    can be read (then nothing is refused)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n):
    """Bytes in decimal gigabytes for a message ("28.8 GB"; MB below 1 GB)."""
    return f"{n / 1e9:.3g} GB" if n >= 1e9 else f"{n / 1e6:.3g} MB"


def require_dense(name, shape, dtype, itemsize, matrices):
    """Refuse (``ValueError``) the dense view ``name``, ``shape`` (*batch, n, n) as it is stored (a
    broadcast view's batch is not) and ``dtype`` (its name), when ``matrices`` n x n arrays of ``itemsize``
    bytes, what its computation holds at once, exceed :func:`free_memory`; returns the bytes needed."""
    n = int(shape[-1])
    needed = int(matrices) * n * n * int(itemsize)
    if needed <= SMALL:
        return needed
    free = free_memory()
    if free is None or needed <= free:
        return needed
    result = math.prod(int(s) for s in shape) * int(itemsize)
    with_temps = "" if needed <= result else f" ({_gb(needed)} with the temporaries its computation makes)"
    raise ValueError(f"{name}: the dense {tuple(int(s) for s in shape)} {dtype} matrix needs {_gb(result)}"
                     f"{with_temps}, more than the {_gb(free)} this machine has free; use the banded "
                     "operations (log_prob, rsample, variance, entropy, the KL) instead")
