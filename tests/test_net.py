"""CorrNet: shapes, a tiny overfit, labels, self-supervised terms and run, shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loopreg.body.parts import NUM_PARTS
from loopreg.net.model import CorrNet, NetConfig, normalise_points
from loopreg.net.train import load_weights, losses, save_weights

SMALL = NetConfig(k=8, widths=(16, 32), global_dim=32, head_dim=32, n_points=256)


def _toy_batch(B: int = 2, N: int = 256, seed: int = 0):
    """Points on a unit-ish 'body' with parts by height band and canonical point = the point itself."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(B, N, 3, generator=g) * torch.tensor([0.5, 1.7, 0.3]) - torch.tensor([0.25, 0.85, 0.15])
    parts = ((pts[..., 1] + 0.85) / 1.7 * NUM_PARTS).long().clamp(0, NUM_PARTS - 1)
    return pts, parts, pts.clone()


def test_output_shapes_and_invariance():
    net = CorrNet(SMALL)
    pts = torch.randn(2, 300, 3)
    out = net(pts)
    assert out.logits.shape == (2, 300, NUM_PARTS)
    assert out.part_canon.shape == (2, 300, NUM_PARTS, 3)
    assert out.canon.shape == (2, 300, 3)
    # the input normalisation removes translation and scale (units)
    x = normalise_points(pts)
    assert torch.allclose(normalise_points(pts * 100 + 5), x, atol=1e-4)


def test_predict_dense_shapes():
    net = CorrNet(SMALL)
    pred = net.predict(np.random.default_rng(0).normal(size=(1000, 3)))
    parts, canon, prob = pred.parts, pred.canon, pred.prob
    assert parts.shape == (1000,) and canon.shape == (1000, 3) and prob.shape == (1000, NUM_PARTS)
    assert np.allclose(prob.sum(1), 1, atol=1e-4)
    assert np.allclose(pred.axes.T @ pred.axes, np.eye(3), atol=1e-6) and np.linalg.det(pred.axes) > 0
    # a scan no larger than the subsample: outputs in the input order, as a direct forward pass
    net = CorrNet(NetConfig(k=8, widths=(16,), global_dim=16, head_dim=16, n_points=256, coarse=()))
    pts = torch.randn(200, 3)  # (coarse levels take the first points: equality needs a net without them)
    _, canon, _ = net.predict_oriented(pts)
    assert np.allclose(canon, net.eval()(pts[None]).canon[0].detach().numpy(), atol=1e-5)


def test_neighbour_max_matches_the_gathered_max_with_and_without_gradients():
    from loopreg.net.model import gather, neighbour_max

    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 50, 8, generator=g, requires_grad=True)
    idx = torch.randint(0, 50, (3, 40, 6), generator=g)
    with torch.no_grad():
        fast = neighbour_max(f, idx)  # the running max over neighbour slots
    assert fast.shape == (3, 40, 8)
    assert torch.equal(fast, gather(f, idx).amax(2))
    w = torch.randn(3, 40, 8, generator=g)
    (neighbour_max(f, idx) * w).sum().backward()  # training: each max's gradient to the row that won
    fast_grad, f.grad = f.grad.clone(), None
    (gather(f, idx).amax(2) * w).sum().backward()  # autograd through the (B,M,k,C) gather
    assert fast_grad.abs().sum() > 0 and torch.allclose(fast_grad, f.grad, atol=1e-6)
    f64 = f.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: neighbour_max(x, idx), (f64,))


def test_head_without_the_concatenation_equals_the_concatenated_head():
    """The forward maps the per-cloud global feature once instead of concatenating it to every point; the
    answer is the head applied to cat([local, global, xyz]) as the weights were trained."""
    net = CorrNet(SMALL).eval()
    pts = torch.randn(2, 300, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = net(pts)
        x, local = net.encoder(pts)
        g = net.glob(local).amax(1, keepdim=True).expand(-1, x.shape[1], -1)
        logits = net.parts(net.head(torch.cat([local, g, x], -1)))
    assert torch.allclose(out.logits, logits, atol=1e-5)


def test_predict_oriented_density_is_a_choice_at_inference():
    net = CorrNet(SMALL).eval()
    pts = np.random.default_rng(2).normal(size=(900, 3)).astype(np.float32)
    sparse = net.predict_oriented(pts, seed=1, passes=2, n_points=300)
    dense = net.predict_oriented(pts, seed=1, passes=2, n_points=900)
    assert sparse[1].shape == dense[1].shape == (900, 3)
    assert not np.allclose(sparse[1], dense[1])  # other subsets, other answers


def test_predict_passes_average_several_subsets():
    net = CorrNet(SMALL).eval()
    pts = np.random.default_rng(1).normal(size=(900, 3)).astype(np.float32)
    one = net.predict_oriented(pts, seed=3)
    many = net.predict_oriented(pts, seed=3, passes=3)
    assert many[1].shape == (900, 3) and np.allclose(many[2].sum(1), 1, atol=1e-4)
    assert np.array_equal(net.predict_oriented(pts, seed=3, passes=1)[1], one[1])  # deterministic
    assert not np.allclose(many[1], one[1])  # the other subsets change the answer
    assert np.array_equal(many[0], many[2].argmax(1))


def test_refinement_recovers_a_tilt_from_the_torso_labels():
    """Labels that say where the torso and upper legs are in canonical space give the rotation between the
    axes the network was run at and the body's root frame; other parts and a too large turn are ignored."""
    from scipy.spatial.transform import Rotation

    from loopreg.body import BodyModel
    from loopreg.net.correspond import refinement

    model = BodyModel.load()
    rest, parts = model.v_template.numpy().astype(np.float64), model.parts.numpy()
    prob = np.full((len(rest), NUM_PARTS), 0.5 / NUM_PARTS)
    prob[np.arange(len(rest)), parts] += 0.5
    R = Rotation.from_rotvec([0.35, 0.1, -0.2]).as_matrix()  # 23 degrees off
    oriented = rest @ R.T  # what the axes show: the body tilted by R
    canon = rest.copy()
    canon[parts == 2] += 0.3  # a wrong arm does not count
    turn = refinement(oriented, parts, canon, prob)
    assert turn is not None and np.allclose(oriented @ turn, rest, atol=1e-6)
    assert (
        refinement(rest @ Rotation.from_rotvec([1.2, 0, 0]).as_matrix().T, parts, rest, prob) is None
    )  # 69°
    assert refinement(oriented, np.zeros(len(rest), int), canon, prob) is None  # no torso point labelled
    # noisy labels with outliers, the points in cm (a raw scan): the same turn as in metres
    rng = np.random.default_rng(0)
    noisy = rest + rng.normal(scale=0.01, size=rest.shape)
    noisy[rng.random(len(rest)) < 0.1] += 0.3
    in_m, in_cm = refinement(oriented, parts, noisy, prob), refinement(oriented * 100, parts, noisy, prob)
    angle = np.degrees(np.arccos(np.clip((np.trace(in_m.T @ in_cm) - 1) / 2, -1, 1)))
    assert angle < 0.5 and np.degrees(np.arccos((np.trace(in_m.T @ R) - 1) / 2)) < 2


def test_orientation_hypotheses_cover_rotations():
    """Every rotation is within ~25 degrees (the training jitter) of some search hypothesis whose up axis
    candidates come from the scan: y-up scans are covered by +-y, any orientation by the principal axes."""
    from scipy.spatial.transform import Rotation

    from loopreg.net.data import geodesic_deg
    from loopreg.net.orient import hypotheses, up_candidates

    rng = np.random.default_rng(0)
    body = rng.normal(size=(2000, 3)) * [0.2, 0.8, 0.12]  # an elongated "body", y up, canonical
    worst = []
    for R in Rotation.random(30, random_state=1).as_matrix():
        scan = body @ R.T  # canonical -> scan
        H = torch.as_tensor(hypotheses(up_candidates(scan), 12))  # scan -> canonical guesses
        err = geodesic_deg(H @ torch.as_tensor(R)[None])  # identity when a guess undoes R
        worst.append(float(err.min()))
    assert max(worst) < 25.0, worst


def test_runner_up_is_far_from_the_winner():
    from loopreg.net.data import geodesic_deg
    from loopreg.net.orient import hypotheses, runner_up

    H = hypotheses(np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]), 12)
    scores = -np.arange(len(H), dtype=np.float64)  # hypothesis 0 wins, 1 and 11 are its 30-degree neighbours
    alt = runner_up(H, scores)
    turn = torch.as_tensor(H[alt] @ H[0].T)[None]
    assert alt == 3 and 89.9 < float(geodesic_deg(turn)[0]) < 90.1  # the best one at least 90 degrees away
    assert runner_up(H, scores, min_deg=160.0) == 6  # facing back


def test_score_batch_labels_and_rotations():
    from loopreg.net.data import geodesic_deg, wrong_orientations

    R = wrong_orientations(500, torch.Generator().manual_seed(0))
    assert (geodesic_deg(R) >= 45.0).all()
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(500, 3, 3), atol=1e-5)


def test_overfit_tiny_loss_decreases():
    torch.manual_seed(0)
    net = CorrNet(SMALL)
    pts, parts, canon = _toy_batch()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(50):
        loss = losses(net(pts), parts, canon, 10.0)["total"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_save_load_roundtrip(tmp_path):
    net = CorrNet(SMALL)
    path = save_weights(tmp_path / "w.pt", net, {"note": "test"})
    net2 = load_weights(path)
    pts = torch.randn(1, 100, 3)
    assert torch.allclose(net.eval()(pts).canon, net2(pts).canon)


def test_label_points_on_body_surface():
    from loopreg.body import BodyModel
    from loopreg.net.data import label_points

    model = BodyModel.load()
    v = model.v_template.numpy().astype(np.float64)
    faces, parts = model.faces.numpy(), model.parts.numpy()
    ids = np.arange(0, len(v), 97)
    part, canon, dist = label_points(v[ids], v, faces, parts, v)  # rest pose: canonical = the point itself
    assert np.allclose(canon, v[ids], atol=1e-5) and dist.max() < 1e-6
    assert (part == parts[ids]).mean() > 0.95


def test_selfsup_terms_and_self_labels():
    from loopreg.body import BodyModel
    from loopreg.body.field import BodyField
    from loopreg.body.model import PARAM_KEYS
    from loopreg.net.selfsup import loop_terms, posed_vertices, self_labels

    model = BodyModel.load()
    field = BodyField.for_model(model.data)
    net = CorrNet(SMALL)
    pts = model.v_template[None, ::20].clone()
    zeros = {"betas": torch.zeros(1, model.num_betas), "global_orient": torch.zeros(1, 3),
             "body_pose": torch.zeros(1, 69), "transl": torch.zeros(1, 3)}  # fmt: skip
    p = {k: zeros[k].clone().requires_grad_(True) for k in PARAM_KEYS}
    terms = loop_terms(field, posed_vertices(model, p), pts, net(pts).canon, p)
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(p["body_pose"].grad).all() and p["body_pose"].grad.abs().sum() > 0
    # the rest-pose body labels its own vertices: canonical point = the vertex, part = the vertex's part
    parts, canon = self_labels(model, posed_vertices(model, zeros), pts)
    assert torch.allclose(canon[0], pts[0], atol=1e-4)
    assert (parts[0] == model.parts[::20]).float().mean() > 0.95
    # and a shifted body shifts nothing in the labels
    moved = {**zeros, "transl": torch.tensor([[0.0, 0.3, 0.0]])}
    _, canon2 = self_labels(model, posed_vertices(model, moved), pts + torch.tensor([0.0, 0.3, 0.0]))
    assert torch.allclose(canon2, canon, atol=1e-4)


def test_shipped_weights_run_on_a_scan():
    from loopreg.body import BodyModel
    from loopreg.body.data import file_sha256
    from loopreg.body.registry import read_manifest
    from loopreg.net import load_corrnet
    from loopreg.net.ship import shipped_weights

    net = load_corrnet()
    if net is None:
        pytest.skip("no shipped weights in model_store")
    assert file_sha256(shipped_weights()) == read_manifest()["weights"]["corrnet"]["sha256"]
    from scipy.spatial.transform import Rotation

    from loopreg.data.poses import sample_poses

    model = BodyModel.load()
    pose = sample_poses(1, seed=1234, names=["a_pose"], yaw_deg=0.0, mirror_prob=0.0)
    with torch.no_grad():
        out = model(betas=torch.zeros(1, model.num_betas), body_pose=pose.body_pose)
    v, rest = out.vertices[0].numpy().astype(np.float64), model.v_template.numpy()
    R = Rotation.from_rotvec([0.4, 2.5, -0.3]).as_matrix()  # the body's root frame is the identity
    pred = net.predict(v @ R.T * 100.0)  # an A-pose body "scan" in cm, turned any way
    assert pred.parts.shape == (len(v),) and np.isfinite(pred.canon).all()
    assert np.degrees(np.arccos((np.trace(pred.axes.T @ R) - 1) / 2)) < 30  # the orientation found
    assert (pred.parts == model.parts.numpy()).mean() > 0.8  # and most parts right
    assert np.median(np.linalg.norm(pred.canon - rest, axis=1)) < 0.05


def test_selfsup_runs_and_resumes(tmp_path):
    from loopreg.body import BodyModel
    from loopreg.net.selfsup import SelfSupConfig, selfsup

    model = BodyModel.load()
    v = model.v_template.numpy()
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):  # two unlabelled "scans" as point-cloud files, in cm
        np.save(scans / f"scan{i}.npy", (v[i::3] + [0.0, 0.0, 0.05 * i]) * 100.0)
    shards = tmp_path / "labelled"  # a labelled shard: the rest-pose body, labels = its own vertices
    shards.mkdir()
    ids = np.random.default_rng(0).choice(len(v), size=(3, 400))
    np.savez(shards / "shard_0000.npz", points=v[ids], parts=model.parts.numpy()[ids].astype(np.int8),
             canon=v[ids], suite=np.zeros(3, np.int8), global_orient=np.zeros((3, 3)))  # fmt: skip
    init = save_weights(tmp_path / "w.pt", CorrNet(SMALL), {})
    cfg = SelfSupConfig(steps=2, n_points=256, batch_size=2, labelled_batch=2, min_inliers=0.0, save_every=1)
    out, state = tmp_path / "ss.pt", tmp_path / "state.pt"
    res = selfsup(scans, init, out, state, cfg, labelled=shards)
    assert [h["step"] for h in res["history"]] == [2] and out.exists()
    assert {"loop", "self", "sup", "score"} <= set(res["history"][0])
    assert all(np.isfinite(v) for v in res["history"][0].values())
    cfg.steps = 3
    res = selfsup(scans, init, out, state, cfg, labelled=shards)  # resumes at step 2: no new fits
    assert [h["step"] for h in res["history"]] == [3]
    assert torch.load(state, weights_only=True)["step"] == 3


def test_unsure_search_widens_to_ups_all_round():
    """A cloud that looks like no body (scores under WIDEN_BELOW) gets the wide search (WIDE_UPS more up
    axes); a body does not."""
    from loopreg.body import BodyModel
    from loopreg.net import load_corrnet
    from loopreg.net.orient import N_YAW, WIDE_UPS, WIDEN_BELOW, search, up_candidates

    net = load_corrnet()
    if net is None:
        pytest.skip("no shipped weights in model_store")
    blob = np.random.default_rng(0).normal(size=(3000, 3)) * [0.3, 0.3, 0.3]
    axes, scores, H = search(net, blob)
    assert scores.max() < WIDEN_BELOW
    assert len(H) == (len(up_candidates(blob)) + WIDE_UPS) * N_YAW and np.allclose(axes, H[scores.argmax()].T)
    body = BodyModel.load().v_template.numpy().astype(np.float64)
    _, scores, H = search(net, body)
    assert scores.max() >= WIDEN_BELOW and len(H) == len(up_candidates(body)) * N_YAW


def test_dataset_shards_start_at_first_shard_and_follow_the_mix_and_pose_weights(tmp_path):
    from loopreg.data.poses import POSE_NAMES
    from loopreg.net.data import DataConfig, ShardDataset, generate_dataset, pack_shards

    mix = {"minimal": 0.0, "clothed": 0.0, "partial": 1.0, "wild": 0.0}
    poses = {name: float(name == "sitting") for name in POSE_NAMES}  # sitting only: hips flexed ~90 deg
    cfg = DataConfig(n_scans=2, shard_size=2, n_points=600, beta_pool=8, mix=mix, first_shard=7, poses=poses)
    generate_dataset(tmp_path, cfg, workers=1, log=lambda *_: None)
    assert [p.name for p in tmp_path.glob("shard_*.npz")] == ["shard_0007.npz"]
    ds = ShardDataset(tmp_path)
    assert len(ds) == 2 and (ds.suite == list(mix).index("partial")).all()
    hips = np.load(tmp_path / "shard_0007.npz")["body_pose"].reshape(2, 23, 3)[:, :2, 0]
    assert (hips < -1.2).all()
    packed = pack_shards(tmp_path, tmp_path / "pack", n_points=300)  # float16, fewer points
    assert ShardDataset(packed).points.shape == (2, 300, 3)
    assert not list(pack_shards(tmp_path, tmp_path / "none", every=2, offset=1).iterdir())  # [1::2]: none
    with pytest.raises(ValueError, match="< 1000"):
        generate_dataset(tmp_path, DataConfig(n_scans=40, first_shard=900), workers=1)


def test_close_range_depth_views_draw_their_camera_distance():
    from loopreg.body import BodyModel
    from loopreg.data.scanner import SUITES, simulate
    from loopreg.net.data import suite_config

    cfg = suite_config("partial", (1.1, 1.2))
    assert cfg.distance == (1.1, 1.2) and SUITES["partial"].distance == (1.5, 3.0)  # the suite is untouched
    assert suite_config("partial") is SUITES["partial"]
    model = BodyModel.load()
    v, f, parts = model.v_template.numpy().astype(np.float64), model.faces.numpy(), model.parts.numpy()
    far = simulate(v, f, parts, np.random.default_rng(3), "partial")[2]["depth_view"]
    near = simulate(v, f, parts, np.random.default_rng(3), cfg)[2]["depth_view"]
    assert 1.1 <= near["distance"] <= 1.2 and far["distance"] >= 1.5


def test_train_data_rejects_bad_mix_or_pose_weights(tmp_path):
    from loopreg.cli import main
    from loopreg.data.poses import POSE_NAMES

    bad = [
        ("--mix", "wild=lots", "not NAME=WEIGHT"),
        ("--mix", "naked=1", "unknown name 'naked'"),
        ("--poses", "cartwheel=2", "unknown name 'cartwheel'"),
        ("--poses", "sitting=x", "not NAME=WEIGHT"),
        ("--poses", "sitting=-1", "must be >= 0"),
        ("--poses", ",".join(f"{name}=0" for name in POSE_NAMES), "not all 0"),
        ("--distance", "1.5", "not LO,HI"),
        ("--distance", "3,1.5", "need 0.3 <= lo <= hi"),
    ]
    for option, value, msg in bad:
        with pytest.raises(SystemExit, match=msg):
            main(["train", "data", "--out", str(tmp_path), option, value])
    assert not list(tmp_path.iterdir())  # nothing written


def test_every_recipe_step_is_a_valid_loopreg_command():
    from loopreg.cli import build_parser
    from loopreg.net.recipes import RECIPES, describe

    parser = build_parser()
    for name, steps in RECIPES.items():
        for step in steps:
            args = parser.parse_args(list(step))  # argparse exits on an unknown option or choice
            assert args.func is not None
        assert describe(name).count("loopreg train") == len(steps)
