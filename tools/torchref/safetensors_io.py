"""A minimal reader and writer of the safetensors format, on numpy only.

Layout (the format's published definition): 8 bytes little-endian u64 N, then N
bytes of UTF-8 JSON mapping each tensor name to {"dtype", "shape",
"data_offsets": [begin, end]} (offsets relative to the byte right after the
header) plus an optional "__metadata__" object of string to string, then the raw
little-endian, row-major tensor bytes.

numpy has no bfloat16, so BF16 tensors are widened to float32 on reading (exact)
and float arrays are rounded to BF16 (round to nearest even, NaN kept NaN) on
writing when the caller asks for "BF16". Everything else maps one to one.
"""

import json
import os
import struct
import tempfile

import numpy as np

__all__ = ["SafetensorsError", "load", "load_with_dtypes", "save", "DTYPES"]

# safetensors dtype name -> numpy dtype of the stored bytes (BF16 stored as u16).
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

# numpy dtype -> safetensors name, for arrays saved without an explicit dtype.
_NAME_OF = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}

# The header may not be larger than this (the reference implementation's bound);
# it keeps a corrupt length from allocating gigabytes.
MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A file that is not valid safetensors, or a tensor that cannot be written."""


def bf16_to_f32(u16):
    """Widen raw BF16 bits (uint16 array) to float32, exactly."""
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """Round a float array to BF16 bits (uint16), nearest even; NaN stays NaN."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)  # quiet NaN, sign kept
    return rounded


def load_with_dtypes(path):
    """Read a safetensors file.

    Returns (tensors, dtypes, metadata): tensors maps name -> numpy array (BF16
    widened to float32), dtypes maps name -> the stored dtype name, metadata is
    the "__metadata__" dict (empty when absent). Raises SafetensorsError naming
    the file on any malformed content, OSError when it cannot be read.
    """
    with open(path, "rb") as f:
        blob = f.read()
    return _parse(blob, path)


def load(path):
    """Read a safetensors file and return name -> numpy array (see load_with_dtypes)."""
    return load_with_dtypes(path)[0]


def _parse(blob, path):
    def bad(msg):
        return SafetensorsError(f"{path}: {msg}")

    if len(blob) < 8:
        raise bad(f"too short for a safetensors header ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise bad(f"header length {n} does not fit the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    data = memoryview(blob)[8 + n :]
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad('"__metadata__" must map strings to strings')

    tensors, dtypes, spans = {}, {}, []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise bad(f"tensor {name!r}: entry is not an object")
        dt = info.get("dtype")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if dt not in DTYPES:
            raise bad(f"tensor {name!r}: unsupported dtype {dt!r} (want one of {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise bad(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= len(data)
        ):
            raise bad(f"tensor {name!r}: data_offsets {offs!r} outside the {len(data)}-byte data section")
        npdt = DTYPES[dt]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * npdt.itemsize != offs[1] - offs[0]:
            raise bad(f"tensor {name!r}: {dt}{shape} needs {count * npdt.itemsize} bytes, data_offsets give {offs[1] - offs[0]}")
        arr = np.frombuffer(data[offs[0] : offs[1]], dtype=npdt).reshape(shape).copy()
        if dt == "BF16":
            arr = bf16_to_f32(arr)
        tensors[name] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        dtypes[name] = dt
        spans.append((offs[0], offs[1], name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise bad(f"tensors {n0!r} and {n1!r} overlap")
    return tensors, dtypes, dict(meta)


def save(path, tensors, dtypes=None, metadata=None):
    """Write tensors (name -> numpy array, in the dict's order) to path.

    dtypes optionally maps a name to the stored dtype name ("BF16" rounds a float
    array; other names cast with numpy); unnamed arrays keep their numpy dtype.
    The file is written next to path under a temporary name, fsynced and renamed,
    so a failure never leaves a half-written or clobbered file.
    """
    dtypes = dtypes or {}
    header, chunks, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        dt = dtypes.get(name) or _NAME_OF.get(arr.dtype)
        if dt not in DTYPES:
            raise SafetensorsError(f"tensor {name!r}: cannot store numpy dtype {arr.dtype} (as {dt!r})")
        if dt == "BF16":
            raw = f32_to_bf16(arr)
        else:
            raw = np.ascontiguousarray(arr, dtype=DTYPES[dt])
        b = raw.tobytes(order="C")
        header[name] = {"dtype": dt, "shape": [int(d) for d in arr.shape], "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * (-len(hj) % 8)  # pad so the data section starts 8-byte aligned
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            for b in chunks:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
