"""Reading ``.npz`` archives and IDX files that may be damaged or hostile, in bounded memory.

Every size a file declares (a zip member's length, an ``.npy`` header's shape and dtype, an IDX header's
dimensions) is checked against what the file can hold and against a bound the caller gives *before*
anything of that size is allocated; only the members asked for are read, and compressed data are
decompressed in blocks, never beyond the size they declare. So a small file can make gvae allocate no
more than the bound (or, for uncompressed members, the bytes the file really holds), whatever it claims.
Problems are ``ValueError``s naming the file and what was wrong."""
import contextlib
import gzip
import io
import math
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

BLOCK = 1 << 20  # bytes decompressed or copied at a time
HEADER_BYTES = 1 << 16  # the longest .npy header read (NumPy's own writers stay far below it)
IDX_DTYPES = {0x08: np.dtype(np.uint8)}  # the IDX element types gvae reads (MNIST's)


def physical_memory():
    """Bytes of physical memory of this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(n):
    """``n`` bytes for a message: "3.1 GB" (decimal units)."""
    if n < 1000:
        return f"{n:.0f} bytes"
    exponent = min(int(math.log10(n)) // 3, 5)
    return f"{n / 1000 ** exponent:.3g} {('kB', 'MB', 'GB', 'TB', 'PB')[exponent - 1]}"


def check_regular_file(path):
    """ValueError unless ``path`` is a regular file (FileNotFoundError when nothing is there): a folder
    fails, and a FIFO or a device such as /dev/zero would block a reader or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
        raise ValueError(f"{path} is {kind}; expected a file")


def _too_large(source, what, nbytes, limit, why):
    return ValueError(f"{source}: {what} is {size_text(nbytes)}, more than the {size_text(limit)} {why}")


def _read_into(f, array):
    """Fill ``array`` (C-contiguous) from the stream ``f`` in blocks of BLOCK bytes; returns the bytes
    read (fewer than the array's when the stream ends early)."""
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        n = f.readinto(view[done:done + BLOCK])
        if not n:
            break
        done += n
    return done


class Npz:
    """An ``.npz`` archive opened for bounded reading: ``names`` (its ``.npy`` members without the suffix),
    :meth:`header` and :meth:`read`. Use it as a context manager. Raises ValueError for anything that is
    not a readable zip archive, and for a member that cannot be read, ``"PATH: cannot read NAME: why"``.
    ``compressed=False`` refuses compressed members (for files gvae writes with ``np.savez``): then no
    array read is larger than the file itself."""

    def __init__(self, path, compressed=True):
        self.path = Path(path)
        self.compressed = compressed
        check_regular_file(self.path)
        self.size = self.path.stat().st_size
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ValueError(f"{self.path}: not a readable .npz archive ({e})") from None
        self._members = {info.filename[:-4]: info for info in self._zip.infolist()
                         if info.filename.endswith(".npy")}
        self.names = set(self._members)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()

    def _refuse(self, name, why):
        return ValueError(f"{self.path}: cannot read {name}: {why}")

    def _open(self, name, limit, why):
        """The member ``name`` opened after its declared sizes passed: at most ``limit`` data bytes plus
        a header, and (uncompressed) no more than the archive holds after the member's start."""
        info = self._members.get(name)
        if info is None:
            raise self._refuse(name, "the archive has no such array")
        allowed = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) if self.compressed else (zipfile.ZIP_STORED,)
        if info.compress_type not in allowed:
            raise self._refuse(name, f"compression method {info.compress_type}; expected "
                                     + ("none or deflate (as NumPy writes)" if self.compressed else
                                        "none (gvae writes this file uncompressed)"))
        if info.file_size > limit + HEADER_BYTES:
            raise _too_large(self.path, f"{name} (uncompressed)", info.file_size, limit, why)
        if info.compress_type == zipfile.ZIP_STORED and (info.compress_size != info.file_size
                                                         or info.header_offset + info.file_size > self.size):
            raise self._refuse(name, f"it declares {info.file_size} bytes, more than the file holds "
                                     "(truncated or forged)")
        try:
            return info, self._zip.open(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise self._refuse(name, str(e)) from None

    def _header(self, f, name):
        """(shape, dtype, fortran_order, header bytes) of the .npy stream ``f``, read with a bounded header."""
        start = f.read(10)
        if len(start) < 10 or start[:6] != b"\x93NUMPY" or start[6:8] not in (b"\x01\x00", b"\x02\x00"):
            raise self._refuse(name, "not a NumPy .npy array of format 1.0 or 2.0")
        prefix = start[8:10] if start[6] == 1 else start[8:10] + f.read(2)
        length = int.from_bytes(prefix, "little")
        if length > HEADER_BYTES:
            raise self._refuse(name, f"a {length}-byte array header, more than the {HEADER_BYTES} gvae reads")
        text = f.read(length)
        if len(text) != length:
            raise self._refuse(name, "truncated in its array header")
        reader = np.lib.format.read_array_header_1_0 if start[6] == 1 else np.lib.format.read_array_header_2_0
        try:
            shape, fortran, dtype = reader(io.BytesIO(prefix + text), max_header_size=HEADER_BYTES)
        except (ValueError, SyntaxError, TypeError) as e:
            raise self._refuse(name, f"a damaged array header ({e})") from None
        if dtype.hasobject or dtype.itemsize == 0:
            raise self._refuse(name, f"dtype {dtype}; expected numbers or text (gvae never unpickles objects)")
        return shape, dtype, fortran, 8 + len(prefix) + length

    def header(self, name):
        """(shape, dtype) that the member ``name`` declares; reads its header only."""
        _, f = self._open(name, math.inf, "")
        with f, self._errors(name):
            return self._header(f, name)[:2]

    def read(self, name, limit, why="gvae reads here"):
        """The array ``name``, after checking that it declares at most ``limit`` bytes (``why`` says
        where the bound comes from, for the message) and exactly the bytes its member holds."""
        info, f = self._open(name, limit, why)
        with f, self._errors(name):
            shape, dtype, fortran, header = self._header(f, name)
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > limit:
                raise _too_large(self.path, f"{name} (shape {shape} of {dtype})", nbytes, limit, why)
            if header + nbytes != info.file_size:
                what = "truncated" if header + nbytes > info.file_size else "followed by extra bytes"
                raise self._refuse(name, f"{what}: shape {shape} of {dtype} needs {nbytes} data bytes, the "
                                         f"member holds {info.file_size - header}")
            out = np.empty(math.prod(shape), dtype)
            done = _read_into(f, out)
            f.read(1)  # at the member's end: the zip reader checks its CRC-32 here (if not before)
            if done != nbytes:
                raise self._refuse(name, f"truncated: {done} of {nbytes} data bytes present")
        return out.reshape(shape, order="F" if fortran else "C")

    @contextlib.contextmanager
    def _errors(self, name):
        """Within it, what the zip reader raises for damaged data (a bad CRC-32, a broken deflate stream,
        a file cut short) is a ValueError naming the member."""
        try:
            yield
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
            raise self._refuse(name, str(e)) from None


def _open_idx(path):
    return gzip.open(path, "rb") if Path(path).suffix == ".gz" else open(path, "rb")


def idx_header(path):
    """(dims, header bytes) of an IDX file of unsigned bytes (a ``.gz`` is decompressed as a stream: only
    the header is read)."""
    check_regular_file(path)
    try:
        with _open_idx(path) as f:
            start = f.read(4)
            if len(start) < 4 or start[0] != 0 or start[1] != 0:
                raise ValueError(f"{path}: not an IDX file (expected magic 0x0000 followed by dtype and ndim)")
            if start[2] not in IDX_DTYPES:
                raise ValueError(f"{path}: IDX dtype code 0x{start[2]:02x}, expected 0x08 (unsigned byte)")
            ndim = start[3]
            raw = f.read(4 * ndim)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut-off gzip an EOFError
        raise ValueError(f"{path}: cannot read IDX file: {e}") from None
    if ndim == 0 or len(raw) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header, expected {ndim} dimension sizes")
    return tuple(int(d) for d in np.frombuffer(raw, ">u4")), 4 + 4 * ndim


def read_idx_bounded(path, limit, why):
    """The IDX file ``path`` as a uint8 array of its header's shape, refused before any allocation when
    the header declares more than ``limit`` bytes (``why``: where the bound comes from). A ``.gz`` is
    decompressed in blocks; the data must end where the header says."""
    dims, header = idx_header(path)
    nbytes = math.prod(dims)
    if nbytes > limit:
        raise _too_large(path, f"the IDX data of shape {dims}", nbytes, limit, why)
    if Path(path).suffix != ".gz":  # a plain file's length is known before reading it
        size = Path(path).stat().st_size
        if size != header + nbytes:
            what = "truncated" if size < header + nbytes else "has trailing bytes"
            raise ValueError(f"{path}: IDX file {what}: {size} bytes, expected {header + nbytes} for shape {dims}")
    out = np.empty(dims, np.uint8)
    try:
        with _open_idx(path) as f:
            f.read(header)
            done = _read_into(f, out)
            trailing = f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read IDX file: {e}") from None
    if done < nbytes:
        raise ValueError(f"{path}: IDX file truncated: {header + done} bytes, expected {header + nbytes} for "
                         f"shape {dims}")
    if trailing:
        raise ValueError(f"{path}: IDX file has trailing bytes after the {header + nbytes} of shape {dims}")
    return out
