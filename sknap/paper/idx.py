"""The IDX file format of MNIST and Fashion-MNIST, read without running code.

An IDX file is two zero bytes, a type code, the number of dimensions, one
big-endian 4-byte size per dimension, then the values. Every way a file can
be malformed (magic number, type code, a short header, data shorter or longer
than the header says, corrupt gzip) is a ``ValueError`` that names the file.
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx"]

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path):
    """Read one IDX file (the MNIST format), gzip-compressed or not.

    Parameters
    ----------
    path : str or Path
        File. Gzip-compressed content is recognised by its first bytes,
        whatever the name.

    Returns
    -------
    array : ndarray
        Shape from the file's header, dtype from its type code.

    Raises
    ------
    ValueError
        When the file is not an IDX file (magic number, type code), its
        header or data is shorter or longer than the header declares, or its
        gzip compression is corrupt; the message names the file.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 9]))
    >>> read_idx(path)
    array([7, 1, 9], dtype=uint8)
    """
    path = Path(path)
    data = _read_bytes(path)
    redo = "Obtain the file again (download or copy it anew)."
    if len(data) < 4 or data[:2] != b"\0\0":
        found = " ".join(f"0x{b:02x}" for b in data[:2])
        raise ValueError(
            f"{path} is not an IDX file: it "
            + (f"holds {len(data)} bytes" if len(data) < 4 else f"starts with {found}")
            + ", but an IDX file starts with the magic number 0x00 0x00, a type "
            f"code and the number of dimensions. {redo}"
        )
    if data[2] not in _IDX_DTYPES:
        codes = ", ".join(
            f"0x{code:02x} ({np.dtype(dtype).name})"
            for code, dtype in _IDX_DTYPES.items()
        )
        raise ValueError(
            f"{path} is not an IDX file: its type code 0x{data[2]:02x} is not one "
            f"of {codes}. {redo}"
        )
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    if ndim == 0:
        raise ValueError(f"{path} declares 0 dimensions; it holds no array. {redo}")
    if len(data) < 4 + 4 * ndim:
        raise ValueError(
            f"{path} is truncated: its header is truncated, {len(data)} bytes where "
            f"{ndim} dimensions need {4 + 4 * ndim}. {redo}"
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    expected = math.prod(shape) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: its header announces shape {shape} "
            f"({expected} bytes of data) but it holds {len(body)} bytes. {redo}"
        )
    return (
        np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    )


def _read_bytes(path):
    """The content of ``path``, decompressed when it starts as gzip does."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path} is not a valid gzip file ({err}); it is truncated or corrupt. "
            "Obtain the file again (download or copy it anew), or give the "
            "uncompressed file."
        ) from err
