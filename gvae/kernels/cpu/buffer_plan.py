"""A recorded program's arrays packed by their lifetimes, so that its replay runs through about as much
memory as the calls it recorded (the idea of XLA's buffer assignment).

The calls a :class:`programs.Program` records free each array once its work is done, and the allocator
hands that memory, still in cache, to the next array; the program keeps every array it touched at an
address of its own for as long as it lives (a training step's record: 179 MiB against the taped step's
45 MiB, docs/performance.md). :func:`pack` moves the arrays that only the program's tasks use into one
arena, each allocation (a base array and every view of it) in one piece, where two allocations share
memory when no group of the program touches both: a group's tasks run side by side, so an allocation
lives from the first group that touches it to the last.

Moving an allocation is right only where the program writes it before reading it, and where nothing
outside the program reads it; the caller names what lives on beyond the program (``keep``: its inputs,
its outputs, the parameters it reads, the gradients it writes), and :func:`pack` checks the rest by
running the packed program with the arena full of NaN and then of zeros, whose results must both be the
unpacked program's bit for bit (else the tasks are put back). Small allocations stay where they are.
"""
import numpy as np

__all__ = ["pack"]

MIN_BYTES = 1 << 16  # allocations smaller than this stay (a moved one costs a view per use)
ALIGN = 4096         # each allocation's place in the arena (and the arena's start) on a page


def _allocation(a):
    """The array that owns ``a``'s memory (``a`` itself, or the base its views lead to), where that is a
    contiguous array of NumPy's own; else None (memory NumPy did not allocate: it stays)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    if a.base is not None or not a.flags.owndata or not (a.flags.c_contiguous or a.flags.f_contiguous):
        return None
    return a


def _up(n):
    return -(-n // ALIGN) * ALIGN


def _places(spans):
    """{id: offset} in an arena for the allocations ``spans`` ({id: (bytes, first group, last group)}), two
    sharing memory only when their groups do not meet; and the arena's size. Largest first, each at the
    lowest offset clear of those placed that live at the same time."""
    placed, offsets = [], {}
    for key, (size, first, last) in sorted(spans.items(), key=lambda item: -item[1][0]):
        clashes = sorted((start, end) for start, end, f, l in placed if not (l < first or last < f))
        offset = 0
        for start, end in clashes:
            if offset + size <= start:
                break
            offset = max(offset, _up(end))
        placed.append((offset, offset + size, first, last))
        offsets[key] = offset
    return offsets, max((end for _, end, _, _ in placed), default=0)


def _snapshot(arrays):
    return [np.array(a, copy=True) for a in arrays]


def _same(a, b):
    return all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


def pack(program, keep, results):
    """Move ``program``'s allocations that only its tasks use into one arena packed by their lifetimes
    (the module's docstring). ``keep``: arrays that live on beyond the program (they and every array of
    their allocations stay); ``results``: the arrays a run's results are read from (among ``keep``),
    compared to check the move. Returns the arena's size and the bytes of the allocations moved, or None
    where nothing was moved (no allocation worth it, a task that cannot say its arrays, a check failed)."""
    if program.refused is not None:
        return None
    stays = {id(o) for o in map(_allocation, keep) if o is not None}
    spans, owners = {}, {}
    for g, group in enumerate(program._kept):
        for task in group:
            if not hasattr(task, "arrays"):
                return None  # its memory unknown: nothing can be moved safely
            for a in task.arrays():
                o = _allocation(a)
                if o is None or a.size == 0:
                    continue
                key = id(o)
                if key in stays or o.nbytes < MIN_BYTES:
                    continue
                owners[key] = o
                size, first, _ = spans.get(key, (o.nbytes, g, g))
                spans[key] = (size, first, g)
    offsets, size = _places(spans)
    moved = sum(o.nbytes for o in owners.values())
    if not spans or size >= 0.9 * moved:
        return None
    block = np.empty(size + ALIGN, np.uint8)
    arena = block[-block.ctypes.data % ALIGN:][:size]

    def move(a):
        o = _allocation(a)
        if o is None or id(o) not in offsets or a.size == 0:
            return a
        at = offsets[id(o)] + a.ctypes.data - o.ctypes.data
        moved = np.ndarray(a.shape, a.dtype, buffer=arena, offset=at, strides=a.strides)
        moved.flags.writeable = a.flags.writeable  # (a kernel's C entry is typed by it: entries.Entry.address)
        return moved

    groups = [tuple(task.with_arrays(move) for task in group) for group in program._kept]
    if any(task.native is None for group in groups for task in group):
        return None  # (a product whose moved operands the BLAS could not take as they are)
    program.run()
    reference = _snapshot(results)
    original = program.retarget(groups)
    for fill in (0xFF, 0x00):  # NaN in every float, then zeros: what a read before a write would see
        arena.fill(fill)
        program.run()
        if not (program.holds() and _same(_snapshot(results), reference)):
            program.retarget(original)
            return None
    return size, moved
