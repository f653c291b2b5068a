"""The LoopReg test-time fit (loopreg.fit.loop) on posed bodies with known canonical correspondences.

Bodies: the default model at poses from `sample_poses` and Gaussian shapes; scan = points on the posed
surface; canon = the same barycentric points on the rest template (as `label_points` labels synthetic scans).
The fit starts from a rough rigid pose (rotation off by 30 degrees, translation by 10 cm).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from smplx.lbs import batch_rodrigues

from loopreg.body.field import BodyField
from loopreg.data.poses import limit_violation, sample_poses
from loopreg.fit.loop import LoopFitConfig, LoopPoser, clothed_r2, fit_loop, loop_anchor
from loopreg.fit.surface import fit_surface

N_POINTS = 3000
CASES = 3


@pytest.fixture(scope="module")
def model(default_model):
    return default_model


@pytest.fixture(scope="module")
def body_field(model):
    return BodyField.for_model(model.data)


def surface_points(vertices: torch.Tensor, faces: torch.Tensor, n: int, gen: torch.Generator):
    """n area-uniform surface points: triangle ids (n,) and barycentrics (n,3)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    area = torch.linalg.cross(b - a, c - a).norm(dim=1)
    tri = torch.multinomial(area, n, replacement=True, generator=gen)
    u = torch.rand(n, 2, generator=gen)
    u = torch.where(u.sum(1, keepdim=True) > 1, 1 - u, u)
    return tri, torch.stack([1 - u.sum(1), u[:, 0], u[:, 1]], 1)


def at(vertices: torch.Tensor, faces: torch.Tensor, tri: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    return (bary[..., None] * vertices[faces[tri]]).sum(1)


def posed_case(model, i: int) -> dict:
    """A posed, shaped body; scan points on it; their canonical points; a rough rigid start."""
    poses = sample_poses(CASES, seed=5)
    gen = torch.Generator().manual_seed(100 + i)
    gt = {
        "betas": torch.randn(1, model.num_betas, generator=gen),
        "global_orient": poses.global_orient[i : i + 1],
        "body_pose": poses.body_pose[i : i + 1],
        "transl": 0.05 * torch.randn(1, 3, generator=gen),
    }
    with torch.no_grad():
        verts = model(**gt).vertices[0]
    faces = model.faces
    tri, bary = surface_points(verts, faces, N_POINTS, gen)
    axis = torch.randn(3, generator=gen)
    axis = axis / axis.norm()
    off = torch.randn(3, generator=gen)
    R = batch_rodrigues(math.radians(30) * axis[None]) @ batch_rodrigues(gt["global_orient"])
    return {
        "gt": gt,
        "verts": verts,
        "scan": at(verts, faces, tri, bary),
        "canon": at(model.v_template, faces, tri, bary),
        "orient": _axis_angle(R[0]),
        "transl": gt["transl"][0] + 0.10 * off / off.norm(),
        "gen": gen,
    }


def _axis_angle(R: torch.Tensor) -> torch.Tensor:
    from scipy.spatial.transform import Rotation

    return torch.as_tensor(Rotation.from_matrix(R.double().numpy()).as_rotvec(), dtype=torch.float32)


def v2v_cm(model, params: dict, verts: torch.Tensor) -> float:
    with torch.no_grad():
        out = model(**{k: v.reshape(1, -1) for k, v in params.items()}).vertices[0]
    return float((out - verts).norm(dim=-1).mean() * 100)


def corrupt(model, canon: torch.Tensor, share: float, gen: torch.Generator):
    """Replace a share of the correspondences by random points of the canonical surface."""
    bad = torch.rand(len(canon), generator=gen) < share
    tri, bary = surface_points(model.v_template, model.faces, int(bad.sum()), gen)
    out = canon.clone()
    out[bad] = at(model.v_template, model.faces, tri, bary)
    return out, bad


@pytest.fixture(scope="module")
def cases(model, body_field):
    """Per case: the body, the loop fit from true correspondences, and stage A / A+B on corrupted ones."""
    out = []
    for i in range(CASES):
        c = posed_case(model, i)
        ones = torch.ones(N_POINTS)
        c["progress"] = []
        c["fit"] = fit_loop(
            model, body_field, c["scan"], c["canon"], ones, c["orient"], c["transl"],
            progress=lambda stage, frac, log=c["progress"]: log.append((stage, frac)),
        )  # fmt: skip
        wrong, bad = corrupt(model, c["canon"], 0.3, c["gen"])
        c["bad"] = bad
        c["fit_a"] = fit_loop(
            model, body_field, c["scan"], wrong, ones, c["orient"], c["transl"], LoopFitConfig(iters_b=0)
        )
        c["fit_ab"] = fit_loop(model, body_field, c["scan"], wrong, ones, c["orient"], c["transl"])
        out.append(c)
    return out


def test_poser_equals_field_pose_sample(model, body_field):
    c = posed_case(model, 0)
    sample = body_field.lookup(c["canon"])
    params = {k: v + 0.1 * torch.randn(v.shape, generator=c["gen"]) for k, v in c["gt"].items()}
    ref = body_field.pose_sample(c["canon"], sample, **params)[0]
    fast = LoopPoser(body_field, sample, model.num_betas)(c["canon"], **{k: v[0] for k, v in params.items()})
    assert torch.allclose(fast, ref, atol=1e-5)


def test_true_correspondences_recover_the_body(model, cases):
    """(a) From a start 30 degrees and 10 cm off: V2V < 1 cm on every body (measured 0.28-0.58 cm on 6)."""
    v2v = [v2v_cm(model, c["fit"].as_init(), c["verts"]) for c in cases]
    assert max(v2v) < 1.0, v2v
    for c in cases:
        assert c["fit"].agreement > 0.99 and c["fit"].inliers > 0.99
        assert c["fit"].reassigned < 0.01 * N_POINTS  # nothing to fix
        assert limit_violation(c["fit"].body_pose[None]).item() < 1e-3
        stages = c["progress"]
        assert {s for s, _ in stages} == {"fit_loop"} and stages[-1][1] == 1.0


def test_unknown_pose_prior_is_refused(model, body_field):
    c, z = torch.zeros(10, 3), torch.zeros(3)
    with pytest.raises(ValueError, match="prior must be"):
        fit_loop(model, body_field, c, c, torch.ones(10), z, z, LoopFitConfig(prior="x"))


def test_wrong_correspondences_are_rejected_and_fixed(model, cases):
    """(b) 30 % of the correspondences replaced by random canonical surface points.

    The robust loss already keeps stage A close (measured 0.19-0.55 cm on 6 bodies): random outliers pull
    in no common direction. Stage B gives the wrong correspondences their right canonical points (the share
    within 2 cm of the truth goes from 70 % to 95-98 %, the inlier share from 0.70 to 0.99) at a small cost
    in V2V (measured +0.05..+0.10 cm over stage A: free correspondences also absorb some of the residual
    of right ones), so stage B is "better" here in correspondences, not in V2V.
    """
    for c in cases:
        a, ab = (
            v2v_cm(model, c["fit_a"].as_init(), c["verts"]),
            v2v_cm(model, c["fit_ab"].as_init(), c["verts"]),
        )
        assert ab < 1.0 and ab < a + 0.2, (a, ab)
        near_a = ((c["fit_a"].canon - c["canon"]).norm(dim=-1) < 0.02).float().mean()
        near_ab = ((c["fit_ab"].canon - c["canon"]).norm(dim=-1) < 0.02).float().mean()
        assert near_a < 0.75 and near_ab > 0.92, (near_a, near_ab)
        assert c["fit_ab"].reassigned > 0.8 * int(c["bad"].sum())
        assert c["fit_ab"].inliers > c["fit_a"].inliers + 0.2


def test_surface_fit_from_loop_result(model, body_field, cases):
    """(c) fit_surface(init=...) skips the hypotheses and nearly keeps (a)'s accuracy: the chamfer alone
    adds +0.06..+0.26 cm (measured on 6 bodies), with a loop anchor of weight 1 -0.02..+0.05 cm; here, with
    the mixture pose prior, cases 0 and 1: 0.51 -> 0.47 and 0.21 -> 0.31 cm (the Gaussian prior: 0.52 ->
    0.47, 0.21 -> 0.31). (The pipeline's default anchor is 0: with network correspondences the anchor keeps
    their bias.)"""
    for c in cases[:2]:
        before = v2v_cm(model, c["fit"].as_init(), c["verts"])
        init = c["fit"].as_init()
        plain = fit_surface(model, c["scan"], pose_penalty=limit_violation, init=init)
        anchor = loop_anchor(body_field, c["scan"], c["fit"], torch.ones(N_POINTS), 0.05, 1.0)
        anchored = fit_surface(model, c["scan"], pose_penalty=limit_violation, init=init, anchor=anchor)
        after = [float((f.vertices - c["verts"]).norm(dim=-1).mean() * 100) for f in (plain, anchored)]
        assert after[0] < before + 0.35 and after[1] < before + 0.15 and max(after) < 1.0, (before, after)
        assert np.isfinite(plain.loss) and plain.hypothesis == 0


def test_surface_fit_holding_pairs(model, cases):
    """The full stage's nearest pairs held for two iterations (the default `pairs_every`) fit as well as
    pairs searched at every iteration: case 0, V2V (cm) within 0.1 of each other."""
    from dataclasses import replace

    from loopreg.fit.surface import SurfaceFitConfig

    c = cases[0]
    init = c["fit"].as_init()
    cfgs = [replace(SurfaceFitConfig(), pairs_every=k) for k in (SurfaceFitConfig().pairs_every, 1)]
    held, fresh = (fit_surface(model, c["scan"], cfg, None, limit_violation, init=init) for cfg in cfgs)
    assert SurfaceFitConfig().pairs_every > 1
    err = [float((f.vertices - c["verts"]).norm(dim=-1).mean() * 100) for f in (held, fresh)]
    assert abs(err[0] - err[1]) < 0.1 and max(err) < 1.0, err
    with pytest.raises(ValueError, match="pairs_every"):
        fit_surface(model, c["scan"], replace(SurfaceFitConfig(), pairs_every=0), init=init)


def test_pipeline_fit_from_correspondences(model, cases):
    """The pipeline's fit with correspondences: loop fit, then the surface fit from it; timed and reported
    separately; no fallback when the correspondences are right."""
    from loopreg.fit.pipeline import FitPlan, fit_correspondences

    c = cases[1]
    corr = {
        "corr": c["canon"],
        "corr_weights": torch.ones(N_POINTS),
        "extra_init": (c["orient"], c["transl"]),
    }
    stages, timings = [], {}
    fit, info = fit_correspondences(
        model, c["scan"], corr, FitPlan(), progress=lambda s, f: stages.append(s), timings=timings
    )
    assert float((fit.vertices - c["verts"]).norm(dim=-1).mean()) < 0.01
    assert set(timings) == {"loop_fit", "fit"} and "fit_loop" in stages and "fit_surface" in stages
    assert info["fallback_surface_loss"] is None and info["inliers"] > 0.95
    assert "fit_fallback" not in stages
    assert info["outside_share"] < FitPlan().clothed_share and not info["clothed"]  # a bare body: no prior


def test_pipeline_keeps_a_clothed_body_inside_its_clothes(model, cases):
    """Scan points on torso and legs moved 2.5 cm out (clothing), arms and head bare: the loop-fit body
    shows the outside share, the surface fit takes the body-inside-clothes prior and the body stops
    swelling into the clothing (measured: clothed points 0.67-0.90 -> 1.48-1.54 cm outside the body, bare
    ones -0.24..-0.37 -> -0.02..-0.13 cm; V2V 1.10 -> 0.94 cm mean of the three; the mechanism, asserted
    with no margin). With the shipped 1 cm margin (`SurfaceFitConfig.outside_margin_m`: the body may come that
    close to the cloth) 0.70-0.91 -> 1.03-1.33 cm and -0.23..-0.37 -> -0.10..-0.29 cm, V2V 1.04 -> 1.07 cm
    here, where the cloth is exact and the skin noiseless; on the benchmark suites the margin is the better
    (clothed n=32 1.46 -> 1.34 cm)."""
    from scipy.spatial import cKDTree

    from loopreg.fit.offsets import vertex_normals
    from loopreg.fit.pipeline import FitPlan, fit_correspondences
    from loopreg.fit.surface import SurfaceFitConfig, signed_offsets

    faces = model.faces.long()

    def offset_cm(verts: torch.Tensor, pts: torch.Tensor) -> float:
        return float(signed_offsets(verts, faces, pts).mean() * 100)

    plans = {
        "off": FitPlan(clothed_outside_weight=1.0),
        "no margin": FitPlan(clothed_outside_weight=0.1, surface=SurfaceFitConfig(outside_margin_m=0.0)),
        "shipped": FitPlan(clothed_outside_weight=0.1),
    }
    v2v = {name: [] for name in plans}
    for c in cases:
        near = torch.as_tensor(cKDTree(c["verts"].numpy()).query(c["scan"].numpy())[1])
        n = vertex_normals(c["verts"], faces)[near]
        cloth = (c["canon"][:, 0].abs() < 0.2) & (c["canon"][:, 1] < 0.45)
        scan = c["scan"] + torch.where(cloth, 0.025, 0.0)[:, None] * n
        start = (c["orient"], c["transl"])
        corr = {"corr": c["canon"], "corr_weights": torch.ones(N_POINTS), "extra_init": start}
        off = {}
        for name, plan in plans.items():
            fit, info = fit_correspondences(model, scan, corr, plan)
            w = plan.clothed_outside_weight
            assert info["outside_share"] > FitPlan().clothed_share and info["clothed"] == (w != 1.0)
            assert info["outside_share"] < FitPlan().heavy_share and info["outside_weight"] == w
            v = fit.vertices.detach()
            off[name] = (offset_cm(v, scan[cloth]), offset_cm(v, scan[~cloth]))
            v2v[name].append(float((v - c["verts"]).norm(dim=-1).mean() * 100))
            assert info["anchor_weight"] == plan.anchor_weight == 0.0  # neither a single view nor heavy
            assert info["loop_outside_weight"] == 1.0
        if c is cases[0]:  # counted as heavy clothing: the surface fit keeps the loop fit's loss
            _, info = fit_correspondences(model, scan, corr, FitPlan(heavy_share=0.0))
            assert info["anchor_weight"] == FitPlan().heavy_anchor > 0
            assert info["loop_outside_weight"] == FitPlan().heavy_loop_outside < 1  # and refits the loop
        for name, push in (("no margin", 0.4), ("shipped", 0.2)):
            assert off[name][0] > off["off"][0] + push and abs(off[name][1]) < abs(off["off"][1]), off
    assert np.mean(v2v["no margin"]) < np.mean(v2v["off"]), v2v
    assert np.mean(v2v["shipped"]) < np.mean(v2v["off"]) + 0.1, v2v


def test_pipeline_keeps_the_orientation_with_more_loop_inliers(model, cases):
    """An ambiguous orientation search gives two correspondence sets; the loop fit keeps the right one,
    whichever of the two it is."""
    from loopreg.fit.pipeline import FitPlan, fit_correspondences

    c = cases[1]
    right = {
        "corr": c["canon"],
        "corr_weights": torch.ones(N_POINTS),
        "extra_init": (c["orient"], c["transl"]),
    }
    flip = torch.tensor([-1.0, 1.0, -1.0])  # the body facing back: canonical x and z mirrored
    wrong = {**right, "corr": c["canon"] * flip}
    plan = FitPlan(fallback="never")
    fit, info = fit_correspondences(model, c["scan"], wrong, plan, alternative=right)
    assert info["orientation"].startswith("search runner-up")
    assert float((fit.vertices - c["verts"]).norm(dim=-1).mean()) < 0.01
    fit, info = fit_correspondences(model, c["scan"], right, plan, alternative=wrong)
    assert info["orientation"] == "search winner"


def test_outside_weight_discounts_scan_points_outside_the_body():
    """The body-inside-clothes prior in chamfer_terms: pairs whose scan point lies outside the body count
    outside_weight times, normalised, so a scan that stands off the body everywhere is fitted as before and
    only the contrast between outside and inside points matters. Body: a unit sphere; scan: its vertices
    moved 2 cm out (upper half) or 0.5 cm in (lower half), so each point's side is known."""
    import trimesh
    from scipy.spatial import cKDTree

    from loopreg.fit.offsets import vertex_normals
    from loopreg.fit.surface import chamfer_terms

    sphere = trimesh.creation.icosphere(subdivisions=3)
    verts = torch.as_tensor(sphere.vertices, dtype=torch.float32)[None]
    normals = vertex_normals(verts, torch.as_tensor(sphere.faces, dtype=torch.long))
    up = verts[0, :, 2] > 0
    outside, inside = 1.02 * verts[0], 0.995 * verts[0]
    mixed = torch.where(up[:, None], outside, inside)

    def terms(scan: torch.Tensor, w: float, with_normals: bool = True, margin: float = 0.0) -> tuple:
        n = normals if with_normals else None
        s2b, b2s = chamfer_terms(verts, scan, cKDTree(scan.numpy()), 0.05, n, w, outside_margin_m=margin)
        return float(s2b[0]), float(b2s[0])

    assert terms(outside, 0.1) == pytest.approx(terms(outside, 1.0), rel=1e-5)
    assert terms(inside, 0.1) == pytest.approx(terms(inside, 1.0), rel=1e-5)
    n_up, n_down = int(up.sum()), int((~up).sum())
    expect = (0.1 * n_up * 0.02**2 + n_down * 0.005**2) / (0.1 * n_up + n_down)
    assert terms(mixed, 0.1)[0] == pytest.approx(expect, rel=1e-3)
    assert terms(mixed, 0.1, with_normals=False) == pytest.approx(terms(mixed, 1.0), rel=1e-6)
    # outside only beyond the margin: 2 cm out is within a 3 cm margin (both sides weigh 1), not a 1 cm one
    assert terms(mixed, 0.1, margin=0.03) == pytest.approx(terms(mixed, 1.0), rel=1e-6)
    assert terms(mixed, 0.1, margin=0.01)[0] == pytest.approx(expect, rel=1e-3)


def test_clothed_r2_discounts_only_the_outward_offset():
    """Residual = scan point - posed point; the normal here is +z (identity rotation)."""
    rot = torch.eye(3).expand(4, 3, 3)
    normal = torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3)
    r = torch.tensor([[0.0, 0.0, 0.05], [0.0, 0.0, -0.05], [0.05, 0.0, 0.0], [0.0, 0.0, 0.005]])
    plain = r.square().sum(-1)
    assert torch.equal(clothed_r2(r, rot, normal, 1.0, 0.01), plain)
    got = clothed_r2(r, rot, normal, 0.01, 0.01)
    assert got[0] == pytest.approx((0.01 + 0.1 * 0.04) ** 2)  # outside: only the margin counts in full
    assert torch.allclose(got[1:], plain[1:])  # inward, tangential, within the margin: unchanged


def test_loop_fit_discounting_cloth_keeps_the_body_under_it(model, body_field, cases):
    """Heavy clothing: scan points on torso and legs 5 cm out along the body normal, with their true
    canonical points. The plain loop loss swells and shifts the body towards the cloth; with the outward
    offset discounted (outside_weight 0.01) the body stays near the truth (measured: V2V mean of the three
    1.71 -> 0.56 cm)."""
    from scipy.spatial import cKDTree

    from loopreg.fit.offsets import vertex_normals

    v2v = {1.0: [], 0.01: []}
    for c in cases:
        near = torch.as_tensor(cKDTree(c["verts"].numpy()).query(c["scan"].numpy())[1])
        n = vertex_normals(c["verts"], model.faces.long())[near]
        cloth = (c["canon"][:, 0].abs() < 0.2) & (c["canon"][:, 1] < 0.45)
        scan = c["scan"] + torch.where(cloth, 0.05, 0.0)[:, None] * n
        for w in v2v:
            res = fit_loop(model, body_field, scan, c["canon"], torch.ones(N_POINTS), c["orient"],
                           c["transl"], LoopFitConfig(outside_weight=w))  # fmt: skip
            with torch.no_grad():
                v = model(**{k: t.reshape(1, -1) for k, t in res.as_init().items()}).vertices[0]
            v2v[w].append(float((v - c["verts"]).norm(dim=-1).mean() * 100))
    assert np.mean(v2v[0.01]) < 0.7 * np.mean(v2v[1.0]), v2v
