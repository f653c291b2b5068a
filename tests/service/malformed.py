"""200 deterministic malformed uploads (name, bytes) built from one good scan, for the upload fuzz test."""

from __future__ import annotations

import gzip
import io
import json
import struct
from collections.abc import Iterator

import numpy as np
import trimesh

N_CASES = 200
EXTS = ("ply", "obj", "stl", "off", "glb", "xyz", "npy")
# Cases that may legitimately register: a long prefix of a text scan is itself a valid (partial) scan, and
# Fortran-order or big-endian .npy files are valid arrays. All others must be rejected or fail.
MAY_REGISTER = {f"truncated-{ext}-{frac}" for ext in ("obj", "off", "xyz") for frac in (0.3, 0.97)}
MAY_REGISTER |= {"npy-fortran", "npy-big-endian"}


def _ply_bin(v: np.ndarray, dtype: str = "<f4", fmt: str = "binary_little_endian", extra: str = "") -> bytes:
    typ = {"<f4": "float", "<f8": "double", ">f4": "float"}[dtype]
    head = f"ply\nformat {fmt} 1.0\n{extra}element vertex {len(v)}\n"
    head += "".join(f"property {typ} {c}\n" for c in "xyz") + "end_header\n"
    return head.encode() + np.asarray(v, dtype).tobytes()


def _ply_ascii(v: np.ndarray, count: int | str | None = None) -> bytes:
    n = len(v) if count is None else count
    head = (
        f"ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
    )
    return (head + "end_header\n" + "".join(f"{a} {b} {c}\n" for a, b, c in v)).encode()


def _obj(v: np.ndarray, f: np.ndarray | None = None) -> bytes:
    text = "".join(f"v {a} {b} {c}\n" for a, b, c in v)
    if f is not None:
        text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f)
    return text.encode()


def _xyz(v: np.ndarray) -> bytes:
    return "".join(f"{a} {b} {c}\n" for a, b, c in v).encode()


def _off(v: np.ndarray, f: np.ndarray, nv: int | None = None) -> bytes:
    head = f"OFF\n{len(v) if nv is None else nv} {len(f)} 0\n"
    return (
        head + "".join(f"{a} {b} {c}\n" for a, b, c in v) + "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
    ).encode()


def _stl(v: np.ndarray, f: np.ndarray, count: int | None = None) -> bytes:
    tri = v[f].astype("<f4")
    rec = np.zeros(len(f), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    rec["v"] = tri
    return b"\0" * 80 + struct.pack("<I", len(f) if count is None else count) + rec.tobytes()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _glb(v: np.ndarray, f: np.ndarray) -> bytes:
    return trimesh.Trimesh(v, f, process=False).export(file_type="glb")


def _glb_raw(doc: dict, binary: bytes = b"", length: int | None = None) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js
    if binary:
        body += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    total = 12 + len(body)
    return b"glTF" + struct.pack("<II", 2, total if length is None else length) + body


def _with_nonfinite(v: np.ndarray, value: float, every: int) -> np.ndarray:
    out = v.copy()
    out[::every, every % 3] = value
    return out


def cases(vertices: np.ndarray, faces: np.ndarray, seed: int = 0) -> list[tuple[str, str, bytes]]:
    """[(case id, filename, content)] x N_CASES, the same for the same inputs and seed."""
    rng = np.random.default_rng(seed)
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    small_v, small_f = v[:300], f[(f < 300).all(1)]
    good = {
        "ply": _ply_bin(v),
        "obj": _obj(v, f),
        "stl": _stl(v, f),
        "off": _off(v, f),
        "glb": _glb(v, f),
        "xyz": _xyz(v),
        "npy": _npy(v.astype(np.float32)),
    }
    out: list[tuple[str, str, bytes]] = []

    def add(case: str, name: str, content: bytes) -> None:
        out.append((case, name, content))

    # 1. random bytes under every extension, several sizes (incl. tiny ones)
    for ext in EXTS:
        for size in (1, 11, 83, 4096, 70_000):
            add(f"random-{size}-{ext}", f"noise.{ext}", rng.bytes(size))
    # 2. empty and whitespace-only files
    for ext in EXTS:
        add(f"empty-{ext}", f"empty.{ext}", b"")
    for ext in ("obj", "xyz", "off", "ply"):
        add(f"blank-{ext}", f"blank.{ext}", b"\n \n\t\n" * 50)
    # 3. wrong extensions: a good file of one type named as another, and unsupported names
    for src, dst in [("ply", "obj"), ("ply", "stl"), ("ply", "glb"), ("ply", "npy"), ("ply", "off"),
                     ("obj", "ply"), ("obj", "glb"), ("obj", "npy"), ("stl", "ply"), ("stl", "obj"),
                     ("glb", "ply"), ("glb", "stl"), ("npy", "ply"), ("npy", "xyz"), ("xyz", "stl"),
                     ("off", "glb"), ("glb", "obj"), ("npy", "obj")]:  # fmt: skip
        add(f"as-{dst}-from-{src}", f"scan.{dst}", good[src])
    for name in ("scan.txt", "scan.exe", "scan.ply.gz", "scan", ".ply", "scan.PLY ", "scan.zip", "scan.fbx"):
        add(f"ext-{name.strip() or 'dot'}", name, good["ply"][:4096])
    add("gzip-ply", "scan.ply", gzip.compress(good["ply"]))
    add("gzip-obj", "scan.obj", gzip.compress(good["obj"]))
    # 4. truncated files, cut at several fractions
    for ext in EXTS:
        for frac in (0.001, 0.01, 0.3, 0.97):
            data = good[ext]
            add(f"truncated-{ext}-{frac}", f"cut.{ext}", data[: max(1, int(len(data) * frac))])
    add("ply-header-only", "h.ply", good["ply"][: good["ply"].find(b"end_header") + 11])
    add("ply-cut-in-header", "h.ply", good["ply"][:40])
    add("glb-header-only", "h.glb", good["glb"][:12])
    add("npy-magic-only", "h.npy", good["npy"][:8])
    add("npy-header-no-data", "h.npy", good["npy"][:128])
    # 5. non-finite vertices in every format
    for value, tag in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
        bad = _with_nonfinite(v, value, 5)
        add(f"{tag}-ply", f"{tag}.ply", _ply_bin(bad))
        add(f"{tag}-ply-ascii", f"{tag}.ply", _ply_ascii(bad))
        add(f"{tag}-obj", f"{tag}.obj", _obj(bad, f))
        add(f"{tag}-xyz", f"{tag}.xyz", _xyz(bad))
        add(f"{tag}-npy", f"{tag}.npy", _npy(bad.astype(np.float32)))
        add(f"{tag}-stl", f"{tag}.stl", _stl(bad, f))
        add(f"{tag}-off", f"{tag}.off", _off(bad, f))
        add(f"{tag}-glb", f"{tag}.glb", _glb(bad, f))
    add("all-nan-npy", "nan.npy", _npy(np.full((2000, 3), np.nan, np.float32)))
    # 6. header counts that are huge, negative or not numbers
    for count in (10**9, 2**31, 2**32 + 5, 2**64, -1, 0, "abc", "1e6", "99999999999999999999999"):
        head = f"ply\nformat binary_little_endian 1.0\nelement vertex {count}\nproperty float x\n"
        add(f"ply-count-{count}", "count.ply", head.encode() + b"property float y\nend_header\n" + b"\0" * 64)
    for count in (10**9, -3, "x"):
        add(f"ply-ascii-count-{count}", "count.ply", _ply_ascii(v[:50], count))
        add(f"off-count-{count}", "count.off", _off(small_v, small_f, nv=count))  # type: ignore[arg-type]
    add("stl-count-huge", "count.stl", _stl(small_v, small_f, count=2**32 - 1))
    add("stl-count-zero", "count.stl", _stl(small_v, small_f, count=0))
    add("stl-count-off-by-one", "count.stl", _stl(small_v, small_f, count=len(small_f) + 1))
    add("npy-shape-huge", "shape.npy", _npy(np.zeros((4, 3), "<f4")).replace(b"(4, 3)", b"(99999999999, 3)"))
    add("npy-shape-negative", "shape.npy", _npy(np.zeros((4, 3), "<f4")).replace(b"(4, 3)", b"(-4, 3)"))
    add("npy-shape-string", "shape.npy", _npy(np.zeros((4, 3), "<f4")).replace(b"(4, 3)", b"('a', 3)"))
    add("npy-1d", "shape.npy", _npy(np.zeros(30, "<f4")))
    add("npy-3d", "shape.npy", _npy(np.zeros((5, 3, 2), "<f4")))
    add("npy-int", "int.npy", _npy(np.zeros((700, 3), "<i4")))
    add("npy-complex", "c.npy", _npy(np.zeros((700, 3), "<c8")))
    add("npy-fortran", "fortran.npy", _npy(np.asfortranarray(v.astype("<f4"))))
    add("npy-big-endian", "be.npy", _npy(v.astype(">f4")))
    add("npy-version-9", "ver.npy", b"\x93NUMPY\x09\x00" + _npy(v[:10].astype("<f4"))[8:])
    add("npy-header-len-huge", "hl.npy", b"\x93NUMPY\x01\x00\xff\xff{'descr'")
    add("npy-object-dtype", "obj.npy", _npy(np.zeros((4, 3), "<f4")).replace(b"'<f4'", b"'|O' "))
    add("glb-length-huge", "len.glb", _glb_raw({"asset": {"version": "2.0"}}, length=2**32 - 1))
    add("glb-version-1", "v1.glb", b"glTF" + struct.pack("<II", 1, 20) + b"\0" * 8)
    add(
        "glb-bad-json",
        "json.glb",
        b"glTF" + struct.pack("<II", 2, 32) + struct.pack("<I4s", 12, b"JSON") + b"{not json!! ",
    )
    add(
        "glb-no-meshes",
        "empty.glb",
        _glb_raw({"asset": {"version": "2.0"}, "scenes": [{"nodes": []}], "scene": 0}),
    )
    accessor_doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 0}]}],
        "buffers": [{"byteLength": 36}], "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 10**9, "type": "VEC3"}],
    }  # fmt: skip
    add("glb-accessor-count-huge", "acc.glb", _glb_raw(accessor_doc, b"\0" * 36))
    accessor_doc["buffers"] = [{"byteLength": 10**12}]
    add("glb-buffer-length-huge", "buf.glb", _glb_raw(accessor_doc, b"\0" * 36))
    # 7. too few points: 1 vertex, 2 vertices, a triangle, all-identical points
    one = v[:1]
    for tag, pts in (("1-vertex", one), ("2-vertices", v[:2]), ("duplicates", np.repeat(one, 3000, 0))):
        add(f"{tag}-ply", "few.ply", _ply_bin(pts))
        add(f"{tag}-xyz", "few.xyz", _xyz(pts))
        add(f"{tag}-npy", "few.npy", _npy(pts.astype(np.float32)))
        add(f"{tag}-obj", "few.obj", _obj(pts))
    add("1-triangle-stl", "tri.stl", _stl(v, f[:1]))
    add("1-triangle-off", "tri.off", _off(v[f[0]], np.array([[0, 1, 2]])))
    add("1-triangle-glb", "tri.glb", _glb(v[f[0]], np.array([[0, 1, 2]])))
    # 8. absurd extents and degenerate shapes
    for scale in (1e30, 1e-30, 1e-9, 1e12, 3e38):
        add(f"scale-{scale}-ply", "scale.ply", _ply_bin(v * scale))
        add(f"scale-{scale}-npy", "scale.npy", _npy((v * scale).astype(np.float64)))
    add("scale-1e300-f32-overflow", "big.ply", _ply_bin(v * 1e300, dtype="<f8"))
    add("units-mismatch", "cm.ply", _ply_bin(v))  # sent with units=mm below
    add("line", "line.xyz", _xyz(np.c_[np.linspace(0, 170, 3000), np.zeros(3000), np.zeros(3000)]))
    add("random-cloud-far", "far.xyz", _xyz(rng.normal(size=(1000, 3)) * 1e9))
    # 9. repeated / inflated headers (zip-bomb-ish: tiny files that claim a lot)
    add("ply-repeated-magic", "rep.ply", b"ply\n" * 20_000)
    add("ply-10k-elements", "el.ply", b"ply\nformat binary_little_endian 1.0\n"
        + b"element vertex 1000000\n" * 10_000 + b"end_header\n")  # fmt: skip
    add("ply-10k-properties", "prop.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n"
        + b"property double x\n" * 10_000 + b"end_header\n" + b"\0" * 64)  # fmt: skip
    add("ply-comments-no-end", "c.ply", b"ply\nformat ascii 1.0\n" + b"comment " + b"a" * 80_000 + b"\n")
    add("obj-empty-v-lines", "v.obj", b"v\n" * 50_000)
    add("obj-v-words", "v.obj", b"v a b c\n" * 2_000)
    add("obj-faces-out-of-range", "f.obj", _obj(small_v) + b"f 1 2 999999\n" * 100)
    add("obj-utf16", "u.obj", _obj(small_v).decode().encode("utf-16"))
    add("xyz-2-columns", "two.xyz", b"1 2\n" * 1000)
    add("xyz-header-then-binary", "x.xyz", b"1 2 3\n" * 30 + rng.bytes(70_000))
    add("off-repeated-header", "rep.off", b"OFF\n" * 20_000)
    add("off-faces-out-of-range", "f.off", _off(small_v, np.array([[0, 1, 10**6]] * 50)))
    add("stl-ascii-garbage", "a.stl", b"solid x\nfacet normal a b c\nouter loop\nvertex 1 2\nendsolid\n")
    add("stl-ascii-repeated-solid", "a.stl", b"solid facet\n" * 20_000)
    # 10. binary PLY whose header does not match the data
    add("ply-double-declared-float-data", "d.ply", _ply_bin(v).replace(b"property float", b"property double"))
    add("ply-extra-trailing-bytes", "t.ply", _ply_bin(v) + rng.bytes(12_345))
    add("ply-unknown-property-type", "p.ply", _ply_bin(v).replace(b"property float y", b"property quux y"))
    add("ply-bare-property", "p.ply", _ply_bin(v).replace(b"property float y", b"property"))
    add("ply-bare-element", "e.ply", _ply_bin(v).replace(b"element vertex", b"element"))
    list_head = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        b"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    add("ply-list-huge", "l.ply", list_head + np.zeros((3, 3), "<f4").tobytes() + b"\xff" * 9)
    add(
        "ply-big-endian-declared",
        "be.ply",
        _ply_bin(v).replace(b"binary_little_endian", b"binary_big_endian"),
    )
    add(
        "ply-format-unknown", "fmt.ply", _ply_bin(v).replace(b"binary_little_endian", b"binary_middle_endian")
    )
    add("ply-no-vertex-element", "nv.ply", _ply_bin(v).replace(b"element vertex", b"element points"))
    add("ply-missing-z", "z.ply", _ply_bin(v).replace(b"property float z\n", b""))
    add("ply-crlf-binary", "crlf.ply", _ply_bin(v).replace(b"\n", b"\r\n", 9))
    assert len(out) >= N_CASES, len(out)
    return out


def fields_for(case: str) -> dict[str, str]:
    return {"units": "mm"} if case == "units-mismatch" else {}


def iter_cases(vertices: np.ndarray, faces: np.ndarray) -> Iterator[tuple[str, str, bytes, dict[str, str]]]:
    for case, name, content in cases(vertices, faces):
        yield case, name, content, fields_for(case)
