"""What holding the BLAS to one thread costs per call, gvae's way against threadpoolctl's, and what finding
the library costs once (docs/notes/2026-11-performance-kernels.md, "The BLAS's thread count").

    python benchmarks/bench_blas_hold.py [--calls 200000]

Rows, with the BLAS's count set to 2 first: gvae's hold (``gvae.kernels.cpu.blas.one_thread``, entered and
left: the library's own get and set, through ctypes), threadpoolctl's controller setting the count twice (the same functions behind a method),
its controller's ``limit`` context and ``threadpool_limits`` (which scans the process at each entry); then
the one-time discovery with threadpoolctl and with the Linux maps, each in a fresh process; and whether a
controller's setter is obeyed on a second thread. Medians of 5 rounds, microseconds per call.
"""
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy  # loads NumPy's BLAS, the one held

from gvae.io.arguments import ArgumentParser
from gvae.kernels.cpu import blas

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_model import cpu_model  # noqa: E402  (benchmarks/cpu_model.py, beside this script)


def per_call(fn, calls):
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def discovery(refuse):
    code = ("import sys, time\n" + ("sys.modules['threadpoolctl'] = None\n" if refuse else "") +
            "import numpy\nfrom gvae.kernels.cpu import blas\nt = time.perf_counter()\nblas.library()\n"
            "print((time.perf_counter() - t) * 1e3)")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(5)]
    return statistics.median(times)


def main():
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200000, help="calls per round of the cheap ways")
    args = parser.parse_args()
    import threadpoolctl
    print(f"CPU: {cpu_model()}; NumPy {numpy.__version__}, threadpoolctl {threadpoolctl.__version__}; "
          f"held: {blas.library()}")
    hold = blas.one_thread()
    get, put = blas._controls()
    put(2)  # a BLAS of two threads (as NumPy's on a 2-core machine): the hold sets 1 and gives 2 back each time

    def gvae_hold():
        with hold:
            pass

    controller = threadpoolctl.ThreadpoolController()
    lib = next(lib for lib in controller.lib_controllers if lib.filepath == blas.library()[1])
    before = lib.get_num_threads()

    def controller_set():
        lib.set_num_threads(1)
        lib.set_num_threads(before)

    def controller_limit():
        with controller.limit(limits=1, user_api="blas"):
            pass

    def limits():
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            pass

    few = max(args.calls // 100, 100)
    print("| way | us per call |\n| --- | --- |")
    print(f"| gvae's hold (enter + exit) | {per_call(gvae_hold, args.calls):.2f} |")
    print(f"| threadpoolctl controller, set_num_threads twice | {per_call(controller_set, args.calls):.2f} |")
    print(f"| threadpoolctl controller.limit (enter + exit) | {per_call(controller_limit, few):.2f} |")
    print(f"| threadpoolctl threadpool_limits (enter + exit) | {per_call(limits, few):.2f} |")
    print(f"finding the library once: threadpoolctl {discovery(False):.2f} ms, the maps {discovery(True):.2f} ms")
    seen = []

    def other():
        lib.set_num_threads(before + 1)
        seen.append(lib.get_num_threads())
        lib.set_num_threads(before)

    lib.set_num_threads(before)  # this thread now owns the controller's OpenBLAS setter
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    print(f"a second thread's set_num_threads({before + 1}) through the controller: the count is {seen[0]}")
    put(before)


if __name__ == "__main__":
    main()
