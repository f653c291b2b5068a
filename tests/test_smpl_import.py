"""SMPL pickle import: synthetic pickles built like the official (Python 2, chumpy) files; no SMPL data."""

from __future__ import annotations

import contextlib
import os
import pickle
import pickletools
import struct
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from loopreg.body.data import SMPL_PARENTS, BodyModelData, file_sha256
from loopreg.body.parts import vertex_parts
from loopreg.body.smpl_import import (
    SMPL_URL,
    SmplImportError,
    UnsafePickleError,
    detect_gender,
    import_smpl,
    load_smpl_pickle,
    missing_model_message,
)

OFFICIAL_NAME = "basicModel_f_lbs_10_207_0_v1.0.0.pkl"


# --- fake chumpy classes: pickle as chumpy.ch.Ch / chumpy.reordering.Select ------------------------
def _ch_private() -> dict:
    # What chumpy's Ch.__getstate__ keeps besides the terms (it drops _parents and _cache).
    return {
        "_dirty_vars": set(),
        "_itr": None,
        "_make_dense": False,
        "_make_sparse": False,
        "_depends_on_deps": {},
    }


class FakeCh:
    def __init__(self, x: np.ndarray):
        self.x = x

    def __getstate__(self) -> dict:
        return {"x": self.x, **_ch_private()}


class FakeSelect:
    def __init__(self, a: FakeCh, idxs: np.ndarray, preferred_shape: tuple):
        self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape

    def __getstate__(self) -> dict:
        return {"a": self.a, "idxs": self.idxs, "preferred_shape": self.preferred_shape, **_ch_private()}


FakeCh.__module__, FakeCh.__name__, FakeCh.__qualname__ = "chumpy.ch", "Ch", "Ch"
FakeSelect.__module__, FakeSelect.__name__, FakeSelect.__qualname__ = "chumpy.reordering", "Select", "Select"


@contextlib.contextmanager
def fake_chumpy_modules() -> Iterator[None]:
    """Register fake 'chumpy' modules only while pickling; they are gone again before loading."""
    with pytest.MonkeyPatch.context() as mp:
        for name, attrs in (
            ("chumpy", {}),
            ("chumpy.ch", {"Ch": FakeCh}),
            ("chumpy.reordering", {"Select": FakeSelect}),
        ):
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            mp.setitem(sys.modules, name, module)
        yield


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes every str/bytes as a Python 2 byte string (SHORT_BINSTRING / BINSTRING), as Python 2 did."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


# --- a tiny SMPL-like model ------------------------------------------------------------------------
def _joints() -> np.ndarray:
    """SMPL-like T-pose joints (y up, facing +z, left = +x), metres."""
    J = np.zeros((24, 3))
    for j, (x, y, z) in {
        0: (0, 0.9, 0), 1: (0.09, 0.82, 0), 3: (0, 1.0, 0), 4: (0.1, 0.5, 0), 6: (0, 1.12, 0),
        7: (0.1, 0.1, 0), 9: (0, 1.18, 0), 10: (0.11, 0.03, 0.1), 12: (0, 1.4, 0), 13: (0.08, 1.35, 0),
        15: (0, 1.55, 0.02), 16: (0.18, 1.38, 0), 18: (0.45, 1.38, 0), 20: (0.7, 1.38, 0), 22: (0.8, 1.38, 0),
    }.items():  # fmt: skip
        J[j] = (x, y, z)
        if x:  # mirror left joints to the right (SMPL's right joint is the next index)
            J[j + 1] = (-x, y, z)
    return J


def make_source(seed: int = 0) -> dict:
    """Source arrays (float64 holding float32-exact values, as the .npz stores float32), V=130.

    Five vertices around each joint, plus a thumb and four fingertips per hand so that keypoint
    guessing (used by BodyModel for non-SMPL meshes) finds its landmarks.
    """
    rng = np.random.default_rng(seed)
    joints = _joints()
    offsets = np.array([[0.03, 0, 0], [-0.03, 0, 0], [0, 0.03, 0], [0, -0.03, 0], [0, 0, 0.03]])
    per = len(offsets)
    points = [joints[:, None] + offsets[None]]
    owner = [np.repeat(np.arange(24), per)]
    for hand, sign in ((22, 1.0), (23, -1.0)):  # thumb, then fingertips spread front to back
        fingers = [[0.0, 0, 0.07]] + [[sign * 0.06, 0, z] for z in (-0.045, -0.015, 0.015, 0.045)]
        points.append(joints[hand] + np.array(fingers)[None])
        owner.append(np.full(5, hand))
    verts = np.concatenate([p.reshape(-1, 3) for p in points])
    owner = np.concatenate(owner)
    V = len(verts)

    def f32(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32).astype(np.float64)

    v_template = f32(verts + rng.normal(0, 0.002, (V, 3)))
    weights = 0.7 * np.eye(24)[owner] + 0.3 * rng.dirichlet(np.ones(24), V)
    weights = f32(weights / weights.sum(1, keepdims=True))
    base = np.arange(V // per)[:, None] * per
    f = np.concatenate([base + [0, 1, 2], base + [2, 3, 4], base + [4, 0, 3]]).astype(np.uint32)
    reg = np.zeros((24, V))
    for j in range(24):
        reg[j, j * per : (j + 1) * per] = [0.25, 0.25, 0.25, 0.125, 0.125]  # exact in float32
    kintree = np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.uint32)
    kintree[0, 0] = 4294967295
    return {
        "v_template": v_template,
        "f": f,
        "weights": weights,
        "shapedirs": f32(rng.normal(0, 0.01, (V, 3, 10))),
        "posedirs": f32(rng.normal(0, 0.001, (V, 3, 207))),
        "J_regressor": reg,
        "kintree_table": kintree,
        "J": f32(reg @ v_template),
    }


def write_smpl_pickle(path: Path, src: dict, *, py2: bool = False, select_template: bool = False) -> bytes:
    """Pickle `src` with the official files' structure: chumpy Ch objects, csc matrices, protocol 2."""
    v_template: object = FakeCh(src["v_template"])
    if select_template:  # v_template as chumpy.reordering.Select over a shuffled flat Ch
        perm = np.random.default_rng(1).permutation(src["v_template"].size)
        flat = np.empty(perm.size)
        flat[perm] = src["v_template"].ravel()
        v_template = FakeSelect(FakeCh(flat), perm, src["v_template"].shape)
    model = {
        "J_regressor_prior": sp.csc_matrix(src["J_regressor"]),
        "f": src["f"],
        "J_regressor": sp.csc_matrix(src["J_regressor"]),
        "kintree_table": src["kintree_table"],
        "J": FakeCh(src["J"]),
        "weights_prior": FakeCh(src["weights"]),
        "weights": FakeCh(src["weights"]),
        "vert_sym_idxs": np.arange(src["v_template"].shape[0])[::-1].copy(),
        "posedirs": FakeCh(src["posedirs"]),
        "pose_training_info": {"pose_subjects": ["a", "b"], "num_poses": 2},
        "bs_style": "lbs",
        "v_template": v_template,
        "shapedirs": FakeCh(src["shapedirs"]),
        "bs_type": "lrotmin",
    }
    with fake_chumpy_modules():
        if py2:
            buf = _BytesSink()
            Py2Pickler(buf, protocol=2).dump(model)
            raw = bytes(buf.data)
            # the module paths a Python 2 numpy / scipy wrote
            raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            raw = raw.replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n")
        else:
            raw = pickle.dumps(model, protocol=2)
    path.write_bytes(raw)
    return raw


class _BytesSink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)


def _globals(raw: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}


# --- tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("py2", [False, True], ids=["py3-protocol2", "py2-byte-strings"])
def test_round_trip_exact(tmp_path: Path, py2: bool) -> None:
    src = make_source()
    pkl = tmp_path / OFFICIAL_NAME
    raw = write_smpl_pickle(pkl, src, py2=py2)
    assert "chumpy" not in sys.modules
    names = _globals(raw)
    assert "chumpy.ch Ch" in names and "copy_reg _reconstructor" not in names  # protocol 2: NEWOBJ
    if py2:
        assert {"numpy.core.multiarray _reconstruct", "scipy.sparse.csc csc_matrix"} <= names
        assert not any(op.name in ("BINUNICODE", "SHORT_BINUNICODE") for op, _, _ in pickletools.genops(raw))

    out, sha = import_smpl(pkl)
    assert out == tmp_path / "basicModel_f_lbs_10_207_0_v1.0.0.npz"
    assert sha == file_sha256(out)
    assert "chumpy" not in sys.modules  # nothing imported chumpy

    with np.load(out, allow_pickle=False) as npz:
        for key in ("v_template", "f", "weights", "shapedirs", "posedirs", "J_regressor"):
            assert npz[key].shape == src[key].shape, key
            np.testing.assert_array_equal(npz[key], src[key], err_msg=key)
        np.testing.assert_array_equal(npz["kintree_table"], src["kintree_table"])
    data = BodyModelData.load(out)
    assert data.meta == {
        "name": "smpl_female",
        "license": "SMPL Model License (non-commercial); not redistributable",
        "source": OFFICIAL_NAME,
        "gender": "female",
        "units": "m",
    }
    np.testing.assert_array_equal(data.parents, [-1, *SMPL_PARENTS[1:]])
    np.testing.assert_array_equal(data.parts, vertex_parts(src["weights"]))


@pytest.mark.parametrize("py2", [False, True])
def test_load_smpl_pickle_values(tmp_path: Path, py2: bool) -> None:
    src = make_source()
    pkl = tmp_path / "SMPL_NEUTRAL.pkl"
    write_smpl_pickle(pkl, src, py2=py2, select_template=True)
    arrays = load_smpl_pickle(pkl)
    assert all(type(v) is np.ndarray for v in arrays.values())
    np.testing.assert_array_equal(arrays["v_template"], src["v_template"])  # Select evaluated
    np.testing.assert_array_equal(arrays["J_regressor_prior"], src["J_regressor"])  # sparse -> dense
    np.testing.assert_array_equal(arrays["J"], src["J"])
    assert arrays["f"].dtype == np.uint32 and arrays["kintree_table"][0, 0] == 4294967295
    assert arrays["bs_type"].item() == "lrotmin" and arrays["bs_style"].item() == "lbs"
    assert arrays["vert_sym_idxs"].shape == (src["v_template"].shape[0],)
    assert "pose_training_info" not in arrays  # a dict: not an array, left out
    out, _ = import_smpl(pkl, tmp_path / "neutral.npz")
    assert BodyModelData.load(out).meta["gender"] == "neutral"


@pytest.mark.parametrize("protocol", [0, 1, 4, 5])
def test_other_pickle_protocols(tmp_path: Path, protocol: int) -> None:
    # protocols 0/1 build objects with copy_reg._reconstructor; 5 builds arrays with _frombuffer
    src = make_source()
    model = {k: FakeCh(v) if v.dtype == np.float64 and k != "J_regressor" else v for k, v in src.items()}
    model["J_regressor"] = sp.csr_matrix(src["J_regressor"])
    with fake_chumpy_modules():
        raw = pickle.dumps(model, protocol=protocol)
    pkl = tmp_path / "SMPL_MALE.pkl"
    pkl.write_bytes(raw)
    arrays = load_smpl_pickle(pkl)
    for key in src:
        np.testing.assert_array_equal(arrays[key], src[key], err_msg=key)


def test_posed_batch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pkl = tmp_path / "basicmodel_m_lbs_10_207_0_v1.1.0.pkl"
    write_smpl_pickle(pkl, make_source(), py2=True)
    out, _ = import_smpl(pkl)
    try:
        from loopreg.body.model import BodyModel
    except ImportError as exc:  # loopreg.body.keypoints is written elsewhere
        pytest.skip(f"BodyModel not importable yet ({exc}); posing check skipped")
    data = BodyModelData.load(out)
    assert data.meta["gender"] == "male"
    model = BodyModel(data)
    body_pose = torch.zeros(2, 69)
    body_pose[1, 3 * 17 + 2] = 1.0  # bend the left elbow of the second body
    result = model(betas=torch.zeros(2, 10), body_pose=body_pose)
    assert result.vertices.shape == (2, data.num_vertices, 3)
    assert result.joints.shape == (2, 24, 3)
    assert torch.isfinite(result.vertices).all()
    np.testing.assert_allclose(result.vertices[0].numpy(), data.v_template, atol=1e-5)  # zero pose = template
    assert not torch.allclose(result.vertices[0], result.vertices[1])


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pkl = tmp_path / "SMPL_FEMALE.pkl"
    pkl.write_bytes(pickle.dumps({"v_template": _Evil(marker)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        import_smpl(pkl)
    assert not marker.exists()
    for protocol in (0, 4):
        pkl.write_bytes(pickle.dumps(_Evil(marker), protocol=protocol))
        with pytest.raises(UnsafePickleError):
            load_smpl_pickle(pkl)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\x80\x02cbuiltins\neval\n.", UnsafePickleError),
        (b"\x80\x02c__builtin__\ngetattr\n.", UnsafePickleError),
        # copy_reg._reconstructor is allowed only for the chumpy/scipy stand-ins
        (
            b"\x80\x02ccopy_reg\n_reconstructor\nc__builtin__\nset\nc__builtin__\nobject\nN\x87R.",
            UnsafePickleError,
        ),
        # _codecs.encode is allowed only with text encodings
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.", UnsafePickleError),
        # BUILD on a stand-in class itself (an attempt to alter it): fails, the class is unchanged
        (
            b"\x80\x02cchumpy.ch\nCh\nN}X\x0c\x00\x00\x00source_classX\x01\x00\x00\x00xs\x86b.",
            SmplImportError,
        ),
    ],
    ids=["eval", "getattr", "reconstructor", "codec", "class-build"],
)
def test_refused_globals(tmp_path: Path, raw: bytes, error: type[Exception]) -> None:
    pkl = tmp_path / "SMPL_MALE.pkl"
    pkl.write_bytes(raw)
    with pytest.raises(error):
        load_smpl_pickle(pkl)
    write_smpl_pickle(pkl, make_source())
    assert load_smpl_pickle(pkl)["v_template"].shape == (130, 3)  # later loads are unaffected


def test_garbage_truncated_and_not_smpl(tmp_path: Path) -> None:
    pkl = tmp_path / "SMPL_MALE.pkl"
    pkl.write_bytes(b"this is not a pickle at all\x00\xff" * 10)
    with pytest.raises(SmplImportError, match="not a valid SMPL pickle"):
        import_smpl(pkl)

    raw = write_smpl_pickle(pkl, make_source())
    pkl.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SmplImportError, match="truncated"):
        import_smpl(pkl)
    pkl.write_bytes(raw[:-1])  # only STOP missing
    with pytest.raises(SmplImportError, match="truncated"):
        import_smpl(pkl)

    pkl.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(SmplImportError, match="not an SMPL model"):
        import_smpl(pkl)
    pkl.write_bytes(pickle.dumps({"v_template": np.zeros((4, 3)), "bs_type": "lrotmin"}, protocol=2))
    with pytest.raises(SmplImportError, match="lacks f, weights"):
        import_smpl(pkl)

    pkl.unlink()
    with pytest.raises(SmplImportError, match="smpl.is.tue.mpg.de"):
        import_smpl(pkl)
    assert issubclass(SmplImportError, ValueError)


def test_gender(tmp_path: Path) -> None:
    cases = {
        "basicModel_f_lbs_10_207_0_v1.0.0.pkl": "female",
        "basicmodel_m_lbs_10_207_0_v1.1.0.pkl": "male",
        "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl": "neutral",
        "SMPL_NEUTRAL.pkl": "neutral",
        "SMPL_FEMALE.pkl": "female",
        "smpl_male.pkl": "male",
    }
    for name, gender in cases.items():
        assert detect_gender(name) == gender, name
    pkl = tmp_path / "model.pkl"
    with pytest.raises(SmplImportError, match="gender"):
        detect_gender(pkl)
    write_smpl_pickle(pkl, make_source())
    out, _ = import_smpl(pkl, tmp_path / "given.npz", gender="male")
    assert BodyModelData.load(out).meta["name"] == "smpl_male"
    with pytest.raises(SmplImportError, match="gender"):
        import_smpl(pkl, gender="other")


def test_missing_model_message() -> None:
    msg = missing_model_message("/nope/SMPL_FEMALE.npz")
    assert "/nope/SMPL_FEMALE.npz" in msg and SMPL_URL in msg
    assert "non-commercial" in msg and "import-smpl FILE.pkl" in msg and "--model PATH" in msg
    assert "default" in msg
