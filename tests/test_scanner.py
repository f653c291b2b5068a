import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from loopreg.body.parts import PART_NAMES
from loopreg.data import scanner as S
from loopreg.geometry import unit

OUTFIT = S.Outfit(
    top="loose_shirt",
    top_amp=0.03,
    sleeve=1.0,
    hem=-0.1,
    bottom="skirt",
    bottom_amp=0.02,
    waist=0.3,
    skirt_length=0.7,
    skirt_flare=0.2,
    hair="long",
    hair_amp=0.04,
    shoes=True,
    shoe_amp=0.008,
    sole=0.02,
)


@pytest.fixture(scope="module")
def body(default_model):
    """An A-posed body with one leg forward."""
    bp = torch.zeros(1, 69)
    bp[0, 45:48] = torch.tensor([0.0, 0.0, -1.1])  # left shoulder down
    bp[0, 48:51] = torch.tensor([0.0, 0.0, 1.1])
    bp[0, 0] = -0.3  # left hip forward
    betas = torch.linspace(-1, 1, 10)[None]
    v = default_model(betas=betas, body_pose=bp).vertices[0].detach().numpy()
    return S.Body(v, default_model.faces.numpy(), default_model.parts.numpy())


@pytest.fixture(scope="module")
def bare_scan(body):
    rng = np.random.default_rng(3)
    return S.remesh(S.clothe(body, rng, S.Outfit()), rng, 20_000)


def dist_to_surface(v, f, pts):
    """Distance from points to a mesh surface (dense samples + tangent plane)."""
    v = np.asarray(v, np.float64)
    sp, face = S.sample_surface(v, f, 400_000, np.random.default_rng(0))
    n = S.face_normals(v, f)[face]
    _, nn = cKDTree(sp).query(pts)
    return np.abs(np.einsum("ij,ij->i", pts - sp[nn], n[nn]))


def dist_to_body(body, pts):
    return dist_to_surface(body.vertices, body.faces, pts)


def dist_to_body_surface(scan, pts):
    return dist_to_surface(scan.vertices, scan.faces, pts)


def test_inside_mesh_matches_a_sphere():
    ico = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (5000, 3))
    r = np.linalg.norm(pts, axis=1)
    w = S.inside_mesh(np.asarray(ico.vertices), np.asarray(ico.faces), pts)
    clear = np.abs(r - 0.3) > 0.005
    assert np.array_equal(w[clear] > 0, r[clear] < 0.3)
    assert set(np.unique(w)) <= {0, 1}


@pytest.mark.parametrize("output", ["mesh", "points", "partial"])
def test_simulate_is_deterministic(body, output):
    cfg = replace(S.SUITES["wild"], vertices=(10_000, 12_000), output=(output,), n_points=(10_000, 20_000))
    runs = [
        S.simulate(body.vertices, body.faces, body.parts, np.random.default_rng(11), cfg) for _ in range(2)
    ]
    (a, Ta, ma), (b, Tb, mb) = runs
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(Ta, Tb)
    assert (a.faces is None and b.faces is None) or np.array_equal(a.faces, b.faces)
    assert np.array_equal(a.normals, b.normals)
    assert json.dumps(ma, sort_keys=True) == json.dumps(mb, sort_keys=True)  # meta is JSON
    c, Tc, _ = S.simulate(body.vertices, body.faces, body.parts, np.random.default_rng(12), cfg)
    assert len(c.vertices) != len(a.vertices) or not np.array_equal(c.vertices, a.vertices)


def test_clothed_scan_encloses_body(body):
    rng = np.random.default_rng(0)
    soup = S.clothe(body, rng, OUTFIT)
    scan = S.remesh(soup, rng, 30_000)
    n = len(body.vertices)
    # the clothe step keeps the body (occupancy only) and then the displaced subdivided body
    disp = np.linalg.norm(soup.vertices[n : 2 * n] - body.vertices, axis=1)
    clothed = disp > 0.003
    assert clothed.mean() > 0.3  # legs under the skirt are bare
    inside = S.inside_mesh(scan.vertices, scan.faces, body.vertices) > 0
    assert inside[clothed].mean() > 0.995
    # anything outside is bare skin (hands, face) on the scan surface, up to details thinner than a voxel
    h = scan.meta["remesh"]["voxel"]
    d = dist_to_body_surface(scan, body.vertices[~inside])
    assert np.quantile(d, 0.99) < 0.8 * h and d.max() < 1.5 * h
    # the skirt bridges the legs: the point between the thighs, below the crotch, is inside the scan
    L = body.landmarks
    between = (L["l_hip"] + L["r_hip"] + L["l_knee"] + L["r_knee"]) / 4
    assert S.inside_mesh(scan.vertices, scan.faces, between[None])[0] > 0
    assert S.inside_mesh(body.vertices, body.faces, between[None])[0] == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_random_outfits_enclose_body(body, seed):
    rng = np.random.default_rng(seed)
    outfit = S.sample_outfit(rng)
    soup = S.clothe(body, rng, outfit)
    scan = S.remesh(soup, rng, 15_000)
    n = len(body.vertices)
    clothed = np.linalg.norm(soup.vertices[n : 2 * n] - body.vertices, axis=1) > 0.003
    inside = S.inside_mesh(scan.vertices, scan.faces, body.vertices) > 0
    assert inside[clothed].mean() > 0.995, outfit


def test_amplitudes_follow_garments(body):
    rng = np.random.default_rng(0)
    o = S.Outfit(
        top="tight_shirt",
        top_amp=0.005,
        sleeve=2.0,
        hem=-0.2,
        bottom="loose_trousers",
        bottom_amp=0.03,
        leg=2.0,
        waist=0.3,
        wrinkle=0.0,
    )
    soup = S.clothe(body, rng, o, smooth_iters=4)
    n = len(body.vertices)
    disp = np.linalg.norm(soup.vertices[n : 2 * n] - body.vertices, axis=1)
    part = np.array(PART_NAMES)[body.parts]
    assert np.median(disp[part == "left_leg"]) > 0.02  # loose trousers
    assert 0.002 < np.median(disp[part == "left_mid_arm"]) < 0.008  # tight sleeve
    assert np.median(disp[part == "head"]) < 0.001 and np.median(disp[part == "left_forearm"]) < 0.002


def test_remesh_has_its_own_topology(body, bare_scan):
    s = bare_scan
    n = len(s.vertices)
    assert 10_000 <= n <= 200_000 and n != len(body.vertices)
    assert abs(n / 20_000 - 1) < 0.2
    # vertex order unrelated to the body's: the nearest body vertex of scan vertex i is almost never i
    _, nn = cKDTree(body.vertices).query(s.vertices[: len(body.vertices)])
    assert np.mean(nn == np.arange(len(nn))) < 0.01
    # closed manifold: every edge in exactly two faces, consistently oriented
    e = s.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    assert len(np.unique(e, axis=0)) == len(e)  # each directed edge once
    und, cnt = np.unique(np.sort(e, 1), axis=0, return_counts=True)
    assert np.all(cnt == 2)
    # and on the body surface
    assert np.mean(dist_to_body(body, s.vertices.astype(np.float64))) < 0.002


@pytest.mark.parametrize("target", [(10_000, 11_000), (180_000, 200_000)])
def test_remesh_vertex_range(body, target):
    rng = np.random.default_rng(5)
    s = S.remesh(S.clothe(body, rng, OUTFIT), rng, target)
    assert target[0] <= len(s.vertices) <= target[1]


def test_holes_remove_the_intended_regions(body, bare_scan):
    rng = np.random.default_rng(4)
    out = S.cut_holes(bare_scan, rng, body, prob=1.0)
    info = out.meta["holes"]
    assert set(info["regions"]) == set(S.HOLE_REGIONS)
    assert all(k > 0 for k in info["removed"].values())
    kept = {tuple(p) for p in out.vertices}
    gone = np.array([p for p in bare_scan.vertices if tuple(p) not in kept], dtype=np.float64)
    assert len(gone) == len(bare_scan.vertices) - len(out.vertices)
    # every removed point is near one of the region centres (or on a sole)
    centres = np.concatenate([np.array(c) for r, c in info["centres"].items() if r != "soles"])
    reach = 1.45 * max(info["regions"].values()) + 0.01  # radius, +-30 % irregular boundary, + a voxel
    near = np.linalg.norm(gone[:, None] - centres[None], axis=2).min(1) < reach
    L = body.landmarks
    soles = np.zeros(len(body.vertices), bool)
    for side in "lr":
        down = unit(L[f"{side}_ankle"] - L[f"{side}_knee"])
        foot = S.P["left_foot"] if side == "l" else S.P["right_foot"]
        soles |= (body.parts == foot) & (body.normals @ down > 0.3)
    sole = cKDTree(body.vertices[soles]).query(gone)[0] < 0.025  # a face on the rim takes its vertices
    assert np.all(near | sole)
    # anatomical sanity: armpits below the shoulders, crotch between the hips, head top highest
    L = body.landmarks
    arm = np.array(info["centres"]["armpits"])
    assert np.all(arm[:, 1] < L["l_shoulder"][1]) and np.all(
        np.abs(arm[:, 0]) < abs(L["l_shoulder"][0]) + 0.03
    )
    crotch = np.array(info["centres"]["crotch"])[0]
    assert abs(crotch[0]) < 0.04 and crotch[1] < L["pelvis"][1]
    assert np.array(info["centres"]["head_top"])[0][1] > body.vertices[:, 1].max() - 0.01
    # faces only reference kept vertices; mesh stays a mesh
    assert out.faces.max() < len(out.vertices)


def test_partial_scan_sees_one_side(body, bare_scan):
    rng = np.random.default_rng(0)
    for az in (0.0, 90.0, 180.0):
        p = S.depth_view(bare_scan, rng, body, distance=2.0, azimuth=az, elevation=0.0, depth_noise=0.0)
        C = np.array(p.meta["depth_view"]["camera_position"])
        pts = p.vertices.astype(np.float64)
        to_cam = unit(C - pts)
        assert p.faces is None and 5_000 < len(pts) < 640 * 480
        assert np.mean(np.einsum("ij,ij->i", p.normals, to_cam) > 0) > 0.99
        # seen surface points belong to the camera side of the body
        _, nn = cKDTree(body.vertices).query(pts)
        assert np.mean(np.einsum("ij,ij->i", body.normals[nn], to_cam) > 0) > 0.95
        assert np.mean(dist_to_body(body, pts)) < 0.003
    noisy = S.depth_view(bare_scan, np.random.default_rng(1), body, distance=3.0, depth_noise=1.5e-3)
    assert np.mean(dist_to_body(body, noisy.vertices.astype(np.float64))) > 0.004  # ~13 mm sigma at 3 m


def test_points_density_noise_and_outliers(bare_scan):
    rng = np.random.default_rng(0)
    uni = S.to_points(bare_scan, rng, 30_000, 0.0)
    var = S.to_points(bare_scan, rng, 30_000, 1.5)
    assert len(uni.vertices) == len(var.vertices) == 30_000
    assert np.allclose(np.linalg.norm(var.normals, axis=1), 1, atol=1e-4)

    def spread(pts):  # coefficient of variation of points per 10 cm cell
        _, cnt = np.unique(np.floor(pts / 0.1).astype(int), axis=0, return_counts=True)
        return cnt.std() / cnt.mean()

    assert spread(var.vertices) > 1.2 * spread(uni.vertices)
    out = S.add_outliers(uni, rng, 0.02)
    assert len(out.vertices) == 30_000 + 600
    noisy = S.add_noise(uni, rng, 0.004)
    d = np.linalg.norm(noisy.vertices - uni.vertices, axis=1)
    assert 0.004 < d.mean() < 0.0085  # chi-3 mean ~1.6 sigma


def test_to_scan_is_a_similarity_that_maps_back(body):
    cfg = {
        "output": ["points", "mesh"],
        "noise": 0.001,
        "rotation": "any",
        "units": ["m", "cm", "mm"],
        "up_axes": ["y", "z"],
        "translation": 2.0,
        "vertices": [10_000, 12_000],
        "n_points": 10_000,
    }
    for seed in range(4):
        scan, T, meta = S.simulate(body.vertices, body.faces, body.parts, np.random.default_rng(seed), cfg)
        A = T[:3, :3]
        s = np.cbrt(np.linalg.det(A))
        assert s in {1.0, 100.0, 1000.0} or min(abs(s - u) for u in (1, 100, 1000)) < 1e-6 * s
        assert np.allclose((A / s) @ (A / s).T, np.eye(3), atol=1e-9)
        assert np.isclose(s, S.UNITS[meta["transform"]["units"]])
        inv = S.similarity_inverse(T)
        assert np.allclose(inv @ T, np.eye(4), atol=1e-9)
        back = scan.vertices.astype(np.float64) @ inv[:3, :3].T + inv[:3, 3]
        assert np.median(dist_to_body(body, back)) < 0.003
        assert np.median(np.linalg.norm(scan.vertices, axis=1)) > 0.3 * s  # it did move/scale
    # yaw-only with z up: the model's up (y) is the scan's z
    T, info = S.random_similarity(np.random.default_rng(0), "yaw", ("mm",), ("z",))
    assert np.allclose(T[:3, :3] @ [0, 1, 0], [0, 0, 1000])


def test_config_from_dict():
    cfg = S.ScanConfig.from_dict({"p_clothed": 1.0, "units": ["cm"]})
    assert cfg.units == ("cm",) and cfg.p_clothed == 1.0
    with pytest.raises(ValueError, match="unknown"):
        S.ScanConfig.from_dict({"nosie": 0.1})
    assert set(S.SUITES) == {"minimal", "clothed", "noisy", "partial", "wild"}


def test_skirt_does_not_swallow_the_arms_of_a_bent_body(default_model):
    """On a body bent at the hips the chest lies across the leg axis; only the torso near the waistband
    may bound the skirt, or the skirt becomes a cone around the hanging arms and hides them (measured:
    all forearm vertices inside the tube before, 0.35 after: the hands at the flared hem)."""
    from loopreg.data.poses import library_poses

    lib = library_poses(["bending_forward"])
    v = default_model(betas=torch.zeros(1, 10), body_pose=lib.body_pose).vertices[0].detach().numpy()
    bent = S.Body(v, default_model.faces.numpy(), default_model.parts.numpy())
    outfit = replace(OUTFIT, skirt_length=0.95, skirt_flare=0.25)
    tv, tf = S._skirt_tube(bent, outfit, np.random.default_rng(0), bent.vertices, bent.parts)
    forearms = np.isin(bent.parts, [PART_NAMES.index(f"{s}_forearm") for s in ("left", "right")])
    inside = S.inside_mesh(tv, tf, bent.vertices[forearms]) > 0
    assert inside.mean() < 0.5
    legs = np.isin(bent.parts, [PART_NAMES.index(f"{s}_upper_leg") for s in ("left", "right")])
    assert (S.inside_mesh(tv, tf, bent.vertices[legs]) > 0).mean() > 0.5  # still a skirt on the thighs
