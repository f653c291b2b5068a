"""Cheap checks that an upload can be a scan: extension, magic bytes, header counts, sizes."""

from __future__ import annotations

import ast
import re
import struct
from pathlib import Path

FORMATS = ("ply", "obj", "stl", "off", "glb", "xyz", "npy")
HEAD_BYTES = 64 * 1024
_PLY_TYPES = {
    "char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
    "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip


class SniffError(ValueError):
    """Not a scan: status is 415 (unknown format) or 422 (malformed header)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def extension(filename: str | None) -> str:
    ext = Path(filename or "").suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise SniffError(
            415,
            f"unsupported file type {('.' + ext) if ext else '(no extension)'!s}; "
            f"upload one of: {', '.join('.' + f for f in FORMATS)}",
        )
    return ext


def sniff(path: Path, ext: str, max_points: int) -> None:
    """Raise SniffError unless the file's start and size look like a scan of type `ext`."""
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    sniff_head(head, path.stat().st_size, ext, max_points)


def sniff_head(head: bytes, size: int, ext: str, max_points: int) -> None:
    """The same checks from the file's first HEAD_BYTES bytes and its size (for streamed uploads)."""
    head = head[:HEAD_BYTES]
    if size == 0:
        raise SniffError(422, "the uploaded file is empty; send the scan file's content")
    try:
        _CHECKS[ext](head, size, max_points)
    except SniffError:
        raise
    except Exception as exc:  # any header the checks did not foresee is malformed, never a 500
        raise _bad(ext, f"unreadable header ({type(exc).__name__})") from exc


def _bad(fmt: str, why: str) -> SniffError:
    return SniffError(422, f"not a valid {fmt.upper()} file: {why}")


def _check_count(fmt: str, what: str, n: object, max_points: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool):
        raise _bad(fmt, f"the header declares {n!r} {what}, not a whole number")
    if n <= 0:
        raise _bad(fmt, f"the header declares {n} {what}")
    if n > max_points:
        raise _bad(
            fmt, f"the header declares {n} {what}, more than the limit of {max_points}; decimate the scan"
        )


def _ply(head: bytes, size: int, max_points: int) -> None:
    if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
        raise _bad("ply", "it must start with the line 'ply'")
    end = head.find(b"end_header")
    if end < 0:
        raise _bad("ply", "no 'end_header' line within the first 64 KiB")
    body_start = head.find(b"\n", end) + 1
    lines = head[:end].decode("ascii", "replace").splitlines()
    fmt = next((ln.split()[1] for ln in lines if ln.startswith("format ") and len(ln.split()) > 1), None)
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise _bad("ply", "missing or unknown 'format' line")
    elements: list[tuple[str, int, int | None]] = []  # name, count, bytes per item (None: has lists)
    for ln in lines:
        parts = ln.split()
        if parts[:1] == ["element"] and len(parts) == 3:
            try:
                elements.append((parts[1], int(parts[2]), 0))
            except ValueError:
                raise _bad("ply", f"bad element line '{ln}'") from None
        elif parts[:1] == ["property"] and elements:
            if len(parts) < 3:
                raise _bad("ply", f"bad property line '{ln}'")
            if parts[1] != "list" and parts[1] not in _PLY_TYPES:
                raise _bad("ply", f"unknown property type '{parts[1]}'")
            name, count, stride = elements[-1]
            item = None if parts[1] == "list" or stride is None else _PLY_TYPES.get(parts[1])
            elements[-1] = (name, count, None if item is None else stride + item)
    vertex = next((e for e in elements if e[0] == "vertex"), None)
    if vertex is None:
        raise _bad("ply", "no 'element vertex' in the header")
    _check_count("ply", "vertices", vertex[1], max_points)
    if fmt != "ascii":  # the fixed-size elements before and including the vertices must fit in the file
        need = body_start
        for _name, count, stride in elements:
            if stride is None:
                break
            need += count * stride
        if size < need:
            raise _bad("ply", f"the file is truncated: the header needs at least {need} bytes, got {size}")


def _text(fmt: str, head: bytes) -> list[str]:
    if b"\x00" in head:
        raise _bad(fmt, "binary content in a text format")
    return head.decode("utf-8", "replace").splitlines()


def _obj(head: bytes, size: int, max_points: int) -> None:
    lines = _text("obj", head)
    if not any(ln.startswith("v ") or ln.startswith("v\t") for ln in lines):
        raise _bad("obj", "no vertex lines ('v x y z') in the first 64 KiB")


def _stl(head: bytes, size: int, max_points: int) -> None:
    if size >= 84:
        (n,) = struct.unpack("<I", head[80:84])
        if size == 84 + 50 * n:
            _check_count("stl", "triangles", n, max_points)
            return
    if head.lstrip().startswith(b"solid") and b"facet" in head:
        return
    raise _bad("stl", "neither ASCII ('solid ... facet') nor binary (size = 84 + 50 x triangle count)")


def _off(head: bytes, size: int, max_points: int) -> None:
    lines = [ln.split("#")[0].strip() for ln in _text("off", head)]
    lines = [ln for ln in lines if ln]
    if not lines or not re.fullmatch(r"[A-Z]*OFF.*", lines[0]):
        raise _bad("off", "it must start with an 'OFF' line")
    rest = lines[0].split()[1:] or (lines[1].split() if len(lines) > 1 else [])
    try:
        nv = int(rest[0])
    except (IndexError, ValueError):
        raise _bad("off", "missing the 'vertices faces edges' count line") from None
    _check_count("off", "vertices", nv, max_points)


def _glb(head: bytes, size: int, max_points: int) -> None:
    if len(head) < 12 or head[:4] != b"glTF":
        raise _bad("glb", "missing the 'glTF' magic bytes")
    version, length = struct.unpack("<II", head[4:12])
    if version != 2:
        raise _bad("glb", f"glTF version {version}; only version 2 is supported")
    if length != size:
        raise _bad("glb", f"the header says {length} bytes but the file has {size} (truncated upload?)")


def _xyz(head: bytes, size: int, max_points: int) -> None:
    lines = [ln for ln in _text("xyz", head)[:20] if ln.strip() and not ln.startswith("#")]
    if size > len(head) and lines:
        lines = lines[:-1]  # the last line of the head may be cut
    try:
        ok = lines and all(len([float(x) for x in ln.replace(",", " ").split()]) >= 3 for ln in lines)
    except ValueError:
        ok = False
    if not ok:
        raise _bad("xyz", "lines must hold at least 3 numbers 'x y z'")


def _npy(head: bytes, size: int, max_points: int) -> None:
    if not head.startswith(b"\x93NUMPY") or len(head) < 10:
        raise _bad("npy", "missing the NumPy magic bytes")
    major = head[6]
    hlen_size = 2 if major == 1 else 4
    (hlen,) = struct.unpack("<H" if hlen_size == 2 else "<I", head[8 : 8 + hlen_size])
    start = 8 + hlen_size
    try:
        header = ast.literal_eval(head[start : start + hlen].decode("latin1"))
        shape, descr = tuple(header["shape"]), str(header["descr"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise _bad("npy", "unreadable array header") from None
    if len(shape) != 2 or shape[1] < 3 or descr[-2:] not in ("f4", "f8", "f2"):
        raise _bad("npy", f"expected a float array of shape (N, 3+), got {descr} {shape}")
    _check_count("npy", "points", shape[0], max_points)
    need = start + hlen + shape[0] * shape[1] * int(descr[-1])
    if size != need:
        raise _bad("npy", f"the array needs {need} bytes but the file has {size}")


_CHECKS = {"ply": _ply, "obj": _obj, "stl": _stl, "off": _off, "glb": _glb, "xyz": _xyz, "npy": _npy}
