"""Rebuilding the default model from anny gives the shipped arrays (needs the `anny` extra)."""

import numpy as np
import pytest

from loopreg.body.data import BodyModelData, file_sha256
from loopreg.body.registry import read_manifest, resolve_model_path

pytest.importorskip("anny", reason="install the 'anny' extra to rebuild the default model")


def test_manifest_entry_matches_shipped_file():
    entry = read_manifest()["models"]["loopreg_default"]
    path = resolve_model_path()
    assert entry["sha256"] == file_sha256(path)
    assert "build-default" in entry["rebuild"] and "CC0" in entry["license"]


def test_rebuild_reproduces_shipped_model(tmp_path):
    from loopreg.body.build_store import build_and_store

    entry = build_and_store(out=tmp_path / "rebuilt.npz", log=lambda *_: None)
    shipped = BodyModelData.load(resolve_model_path())
    rebuilt = BodyModelData.load(tmp_path / "rebuilt.npz")
    for key in ("v_template", "weights", "shapedirs", "posedirs", "J_regressor"):
        assert np.allclose(getattr(rebuilt, key), getattr(shipped, key), atol=1e-6), key
    for key in ("faces", "parents", "parts"):
        assert np.array_equal(getattr(rebuilt, key), getattr(shipped, key)), key
    report = entry["build_report"]
    assert report["pca_explained"] > 0.999
    assert report["pca_mean_vertex_error_mm"] < 2.0
    assert 1.4 < report["height_m"]["min"] and report["height_m"]["max"] < 2.1  # adults, not 1.29-2.38 m
