import json
import subprocess
import sys

import numpy as np
import pytest
import smplx
import torch
import trimesh

from loopreg.body import SMPL_PARENTS, BodyModel, BodyModelData
from loopreg.body.data import EXTRA_VERTEX_NAMES, ModelFormatError
from loopreg.body.model import to_smplx
from loopreg.body.parts import NUM_PARTS, PART_NAMES
from loopreg.body.registry import model_info


def test_model_info_contract_fields():
    out = subprocess.run(
        [sys.executable, "-m", "loopreg.cli", "model", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    for key in ("name", "num_vertices", "num_faces", "num_joints", "num_betas", "license", "sha256"):
        assert key in info
    assert info == model_info()
    assert info["num_joints"] == 24 and info["num_betas"] == 10
    assert 6000 <= info["num_vertices"] <= 8000
    assert "CC0" in info["license"]


def test_missing_model_names_where_to_get_smpl(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "loopreg.cli", "model", "info", "--model", str(tmp_path / "SMPL_NEUTRAL.npz")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "import-smpl" in out.stderr and "smpl.is.tue.mpg.de" in out.stderr


def test_smplx_loads_default_model(default_data):
    smpl = to_smplx(default_data)
    assert isinstance(smpl, smplx.SMPL)
    out = smpl(betas=torch.zeros(1, 10), body_pose=torch.zeros(1, 69), global_orient=torch.zeros(1, 3))
    assert np.allclose(out.vertices[0].numpy(), default_data.v_template, atol=1e-6)


def test_rest_template_conventions(default_model):
    rest = default_model.rest()
    v, J = rest.vertices[0].numpy(), rest.joints[0].numpy()
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 1.9  # metres, y up
    head, pelvis = J[15], J[0]
    assert head[1] > pelvis[1] + 0.4
    # T-pose: wrists level with the shoulders, far out along +-x; model's left is +x.
    for shoulder, wrist, sign in ((16, 20, 1), (17, 21, -1)):
        assert abs(J[wrist, 1] - J[shoulder, 1]) < 0.05
        assert sign * J[wrist, 0] > 0.5
    nose = v[default_model.data.vertex_ids["nose"]]
    assert nose[2] > J[15, 2] + 0.05  # facing +z


def test_posed_meshes_stay_watertight(default_model):
    gen = torch.Generator().manual_seed(0)
    B = 20
    out = default_model(
        betas=torch.randn(B, 10, generator=gen),
        global_orient=torch.randn(B, 3, generator=gen),
        body_pose=0.3 * torch.randn(B, 69, generator=gen),
        transl=torch.randn(B, 3, generator=gen),
    )
    faces = default_model.faces.numpy()
    assert out.vertices.shape == (B, default_model.data.num_vertices, 3)
    for verts in out.vertices.numpy():
        mesh = trimesh.Trimesh(verts, faces, process=False)
        assert mesh.is_watertight and mesh.euler_number == 2


def test_batched_posing_matches_single(default_model):
    gen = torch.Generator().manual_seed(1)
    pose = 0.4 * torch.randn(3, 69, generator=gen)
    betas = torch.randn(3, 10, generator=gen)
    batch = default_model(betas=betas, body_pose=pose).vertices
    one = default_model(betas=betas[1:2], body_pose=pose[1:2]).vertices
    assert torch.allclose(batch[1:2], one, atol=1e-5)


def test_arrays_are_a_valid_smpl_model(default_data):
    d = default_data
    assert np.allclose(d.weights.sum(1), 1, atol=1e-5) and d.weights.min() >= 0
    assert np.all(d.J_regressor >= 0) and np.allclose(d.J_regressor.sum(1), 1, atol=1e-5)
    assert tuple(d.parents) == SMPL_PARENTS
    assert set(np.unique(d.parts)) == set(range(NUM_PARTS)) and len(PART_NAMES) == 14
    assert not np.any(d.posedirs)  # documented: zero pose blend shapes


def test_extra_keypoint_ids_are_this_mesh(default_data, default_model):
    ids = default_data.vertex_ids
    assert set(EXTRA_VERTEX_NAMES) <= set(ids)
    values = [ids[k] for k in EXTRA_VERTEX_NAMES]
    assert len(set(values)) == len(values) and max(values) < default_data.num_vertices
    v, parts = default_data.v_template, default_data.parts
    assert parts[ids["nose"]] == 0 and parts[ids["LHeel"]] == 12 and parts[ids["rindex"]] == 7
    assert v[ids["lthumb"], 0] > 0.6 and v[ids["rthumb"], 0] < -0.6
    kp = default_model().keypoints[0]
    assert torch.allclose(kp[0], torch.as_tensor(v[ids["nose"]]), atol=1e-6)


def test_save_load_roundtrip_and_validation(tmp_path, default_data):
    path = tmp_path / "m.npz"
    sha1 = default_data.save(path)
    again = BodyModelData.load(path)
    for key in ("v_template", "faces", "weights", "shapedirs", "posedirs", "J_regressor", "parents", "parts"):
        assert np.array_equal(getattr(again, key), getattr(default_data, key)), key
    assert again.vertex_ids == default_data.vertex_ids
    assert again.save(tmp_path / "m2.npz") == sha1  # deterministic bytes
    bad = BodyModelData(**{**default_data.__dict__, "weights": default_data.weights[:, :10]})
    with pytest.raises(ModelFormatError, match="weights"):
        bad.validate()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFormatError, match="readable"):
        BodyModelData.load(tmp_path / "junk.npz")


def test_body_model_runs_on_cuda_when_present(default_data):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    m = BodyModel(default_data).cuda()
    assert m(body_pose=torch.zeros(2, 69, device="cuda")).vertices.is_cuda
