"""Import an official SMPL model pickle (v1.0 / v1.1, Python 2, chumpy inside) into LoopReg's .npz format.

The pickle is read by a restricted unpickler: chumpy and scipy.sparse classes become inert stand-ins
that only record their pickled state, numpy arrays are rebuilt by numpy's own reconstructors, a few
harmless builtins are allowed, and every other global is refused. The loader imports neither chumpy nor scipy,
and nothing in the file can run code. SMPL files are non-commercial and never shipped with LoopReg.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from loopreg.body.data import BodyModelData, ModelFormatError

SMPL_URL = "https://smpl.is.tue.mpg.de"
SMPL_LICENSE = "SMPL Model License (non-commercial); not redistributable"
REQUIRED_KEYS = ("v_template", "f", "weights", "shapedirs", "posedirs", "J_regressor", "kintree_table")
GENDERS = ("female", "male", "neutral")


class SmplImportError(ValueError):
    """The file is not a readable SMPL model pickle."""


class UnsafePickleError(SmplImportError):
    """The pickle references a global outside the allow-list (refused before anything runs)."""


# --- inert stand-ins ---------------------------------------------------------------------------------
class _FrozenClass(type):
    """Stand-in classes cannot be modified by the pickle (BUILD on a class would setattr on it)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise UnsafePickleError(f"refused to set {name!r} on {cls.__name__}")


class _StandIn(metaclass=_FrozenClass):
    """Records whatever the pickle gives it; has no behaviour of its own."""

    source_class = "?"
    args: tuple = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE on the class
        self.args = args

    def __setstate__(self, state: Any) -> None:  # BUILD
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.source_class}>"


class _ChumpyStandIn(_StandIn):
    """Any chumpy class (Ch, Select, ...): the array is state['x'] or is computed from the state."""


class _SparseStandIn(_StandIn):
    """A scipy sparse matrix (csc/csr/coo); converted to a dense array."""

    fmt = "csc"


_STANDINS: dict[str, type[_StandIn]] = {}


def _standin(base: type[_StandIn], qualname: str, **attrs: Any) -> type[_StandIn]:
    if qualname not in _STANDINS:
        short = qualname.rsplit(".", 1)[-1]
        _STANDINS[qualname] = _FrozenClass(short, (base,), {"source_class": qualname, **attrs})
    return _STANDINS[qualname]


# --- restricted callables (instances without __dict__, so a pickle cannot alter them) --------------
class _SafeReconstructor:
    """copy_reg._reconstructor (protocol 0/1 objects), limited to our stand-ins."""

    __slots__ = ()

    def __call__(self, cls: Any, base: Any, state: Any = None) -> Any:
        if (
            not (isinstance(cls, type) and issubclass(cls, _StandIn))
            or base is not object
            or state is not None
        ):
            raise UnsafePickleError(f"refused copy_reg._reconstructor({cls!r}, {base!r})")
        return cls.__new__(cls)


class _SafeEncode:
    """_codecs.encode, as Python 3 pickles bytes at protocol <= 2: plain text encodings only."""

    __slots__ = ()

    def __call__(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        enc = str(encoding).lower().replace("-", "").replace("_", "")
        if not isinstance(obj, str) or enc not in ("latin1", "utf8", "ascii") or errors != "strict":
            raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
        return obj.encode(enc)


def _numpy_attr(name: str) -> Any:
    for module in ("numpy._core.multiarray", "numpy._core.numeric", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError(f"numpy has no {name}")


_BUILTINS: dict[str, Any] = {
    "object": object, "set": set, "frozenset": frozenset, "slice": slice, "complex": complex,
    "bytearray": bytearray, "list": list, "tuple": tuple, "dict": dict, "int": int, "long": int,
    "float": float, "bool": bool, "str": str, "unicode": str, "bytes": bytes,
}  # fmt: skip
_NUMPY_FUNCS = ("_reconstruct", "scalar", "_frombuffer")
_SPARSE_NAMES = {f"{f}_{kind}": f for f in ("csc", "csr", "coo") for kind in ("matrix", "array")}


class _SmplUnpickler(pickle.Unpickler):
    """Unpickler whose find_class is an allow-list (it sees Python 2 module names unmapped)."""

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if module == "chumpy" or module.startswith("chumpy."):
            return _standin(_ChumpyStandIn, qualname)
        if module.startswith("scipy.sparse") and name in _SPARSE_NAMES:
            return _standin(_SparseStandIn, qualname, fmt=_SPARSE_NAMES[name])
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module.startswith(("numpy.core.", "numpy._core.")) and name in _NUMPY_FUNCS:
            return _numpy_attr(name)
        if module in ("__builtin__", "builtins") and name in _BUILTINS:
            return _BUILTINS[name]
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _SafeReconstructor()
        if module == "_codecs" and name == "encode":
            return _SafeEncode()
        raise UnsafePickleError(f"refused to load {qualname!r} from the pickle: not an allowed SMPL type")


# --- stand-ins -> arrays ---------------------------------------------------------------------------
def _state_dict(obj: _StandIn) -> dict:
    state = getattr(obj, "state", None)
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict, slotstate)
        state = {**(state[0] or {}), **state[1]}
    if isinstance(state, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in state.items()}
    if obj.args and isinstance(obj.args[0], np.ndarray | _StandIn):  # Ch(array) via REDUCE
        return {"x": obj.args[0]}
    return {}


def _chumpy_value(obj: _ChumpyStandIn, depth: int = 0) -> np.ndarray:
    """The array a chumpy object evaluates to (plain Ch, and the reorderings SMPL files use)."""
    if depth > 32:
        raise SmplImportError(f"chumpy expression too deep in {obj.source_class}")
    st = _state_dict(obj)
    kind = obj.source_class.rsplit(".", 1)[-1]

    def val(v: Any) -> np.ndarray:
        return _chumpy_value(v, depth + 1) if isinstance(v, _ChumpyStandIn) else np.asarray(v)

    if "x" in st:
        return val(st["x"])
    if kind == "Select" and "a" in st and "idxs" in st:
        out = val(st["a"]).ravel()[np.asarray(st["idxs"])]
        return out.reshape(st["preferred_shape"]) if "preferred_shape" in st else out
    if kind == "Reshape" and "a" in st and "newshape" in st:
        return val(st["a"]).reshape(st["newshape"])
    if kind == "transpose" and "a" in st:
        return np.transpose(val(st["a"]), st.get("axes"))
    found = [v for v in st.values() if isinstance(v, np.ndarray | _ChumpyStandIn)]
    if len(found) == 1:
        return val(found[0])
    raise SmplImportError(f"cannot recover an array from {obj.source_class} (state keys: {sorted(st)})")


def _sparse_dense(obj: _SparseStandIn) -> np.ndarray:
    st = _state_dict(obj)
    try:
        shape = tuple(int(n) for n in st.get("_shape", st.get("shape")))
        data = np.asarray(st["data"])
        out = np.zeros(shape, dtype=data.dtype)
        if obj.fmt == "coo":
            rows, cols = st["coords"] if "coords" in st else (st["row"], st["col"])
        else:
            indptr, indices = np.asarray(st["indptr"]), np.asarray(st["indices"])
            outer = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            rows, cols = (indices, outer) if obj.fmt == "csc" else (outer, indices)
        np.add.at(out, (np.asarray(rows), np.asarray(cols)), data)  # sums duplicates, as scipy does
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SmplImportError(f"malformed sparse matrix {obj.source_class}: {exc}") from exc
    return out


def _to_array(value: Any) -> np.ndarray | None:
    """A plain dense array, or None for values that are not array-like (dicts, None, ...)."""
    if isinstance(value, _ChumpyStandIn):
        return np.array(_chumpy_value(value))
    if isinstance(value, _SparseStandIn):
        return _sparse_dense(value)
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if isinstance(value, np.ndarray | np.generic | str | int | float | bool | list | tuple):
        try:
            arr = np.array(value)
        except ValueError:
            return None
        return None if arr.dtype == object else arr
    return None


def load_smpl_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Read an SMPL model pickle safely; every array-like value as a dense numpy array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SmplImportError(f"{path} does not exist.\n{missing_model_message(path)}") from None
    if raw[:2] == b"PK":
        raise SmplImportError(f"{path} is a zip/.npz file, not an SMPL pickle; pass an .npz with --model")
    try:
        obj = _SmplUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except EOFError as exc:
        raise SmplImportError(f"{path} is truncated (the pickle ends early): {exc}") from exc
    except Exception as exc:  # any other unpickling failure means "not an SMPL pickle"
        kind = "truncated" if "truncated" in str(exc) else "not a valid SMPL pickle"
        raise SmplImportError(f"{path} is {kind}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise SmplImportError(f"{path} is not an SMPL model: the pickle holds a {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        try:
            arr = _to_array(value)
        except SmplImportError:
            raise
        except Exception as exc:
            raise SmplImportError(f"{path}: cannot convert {key!r} to an array: {exc}") from exc
        if arr is not None:
            out[key] = arr
    return out


# --- import ----------------------------------------------------------------------------------------
def detect_gender(path: str | Path) -> str:
    """'female' / 'male' / 'neutral' from names like basicModel_f_lbs_..., SMPL_NEUTRAL.pkl."""
    tokens = set(re.split(r"[^a-z]+", Path(path).stem.lower()))
    for gender, short in (("neutral", "neutral"), ("female", "f"), ("male", "m")):
        if gender in tokens or short in tokens:
            return gender
    raise SmplImportError(
        f"cannot tell the gender from the file name {Path(path).name!r}; "
        "pass gender='female', 'male' or 'neutral'"
    )


def import_smpl(
    pkl_path: str | Path, out_path: str | Path | None = None, gender: str | None = None
) -> tuple[Path, str]:
    """Convert an SMPL pickle to LoopReg's .npz (default: next to it, <stem>.npz); return (path, sha256)."""
    from loopreg.body.parts import vertex_parts

    pkl_path = Path(pkl_path)
    arrays = load_smpl_pickle(pkl_path)
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise SmplImportError(f"{pkl_path} is not an SMPL model: it lacks {', '.join(missing)}")
    if arrays.get("bs_style", np.array("lbs")).item() != "lbs":
        raise SmplImportError(f"{pkl_path}: unsupported blend skinning style {arrays['bs_style'].item()!r}")
    gender = gender or detect_gender(pkl_path)
    if gender not in GENDERS:
        raise SmplImportError(f"gender must be one of {GENDERS}, got {gender!r}")
    num_joints = arrays["kintree_table"].shape[-1]
    if arrays["kintree_table"].shape != (2, 24):
        raise SmplImportError(
            f"{pkl_path}: expected SMPL's 24 joints, got {num_joints} (SMPL-H/X, MANO unsupported)"
        )
    try:
        data = BodyModelData.from_arrays({k: arrays[k] for k in REQUIRED_KEYS})
    except ModelFormatError as exc:
        raise SmplImportError(f"{pkl_path} is not a consistent SMPL model: {exc}") from exc
    data = replace(data, parts=vertex_parts(data.weights)).with_meta(
        name=f"smpl_{gender}", license=SMPL_LICENSE, source=pkl_path.name, gender=gender, units="m"
    )
    out = Path(out_path) if out_path is not None else pkl_path.with_suffix(".npz")
    if out.resolve() == pkl_path.resolve():
        raise SmplImportError("the output path must differ from the input pickle")
    return out, data.save(out)


def missing_model_message(path: str | Path) -> str:
    """What to tell a user whose --model path does not exist."""
    return (
        f"Body model file not found: {path}\n"
        f"SMPL cannot be shipped with LoopReg. To use it, register at {SMPL_URL} and accept its licence\n"
        "(non-commercial use only), download the Python version (SMPL v1.0 or v1.1, a .pkl per gender),\n"
        "then convert it once:\n"
        "    loopreg model import-smpl FILE.pkl\n"
        "and pass the .npz it writes with --model PATH.\n"
        "Without --model, LoopReg uses its free default body model, which needs no download."
    )
