"""What every benchmark class of the suite shares."""


class Benchmark:
    """Base of every benchmark class.

    ``timeout`` covers ``setup``, where the first run after a kernel's source changed compiles it
    (Numba then caches it on disk for the later processes): minutes on a busy 2-core machine, beyond
    asv's default of 60 s."""

    timeout = 600
