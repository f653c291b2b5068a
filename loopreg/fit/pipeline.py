"""scan -> normalise -> correspond -> fit -> refine -> export: one registration, with progress reports.

correspond: the shipped network (orientation search, then parts + canonical points) and a robust
Procrustes pose; fit: the LoopReg loop fit through the diffused field (fixed, then free correspondences);
refine: a surface fit anchored by the loop loss, optional per-vertex offsets. Without network weights
(or `network=False`) the fit is the surface fit from rest-pose yaw hypotheses: the benchmark's baseline.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from loopreg.body import BodyModel
from loopreg.body.parts import PART_NAMES
from loopreg.data.normalise import normalise
from loopreg.data.poses import limit_violation, pose_mixture, pose_prior
from loopreg.data.scan_io import DEFAULT_MAX_VERTICES, Scan, load_scan
from loopreg.fit import export
from loopreg.fit.loop import LoopFitConfig, LoopFitResult, fit_loop, loop_anchor
from loopreg.fit.metrics import closest_triangles, distance_summary, point_to_surface
from loopreg.fit.offsets import fit_offsets
from loopreg.fit.surface import (
    FitResult,
    SurfaceFitConfig,
    fit_surface,
    joint_support,
    outside_share,
    surface_loss,
)
from loopreg.fit.visibility import estimate_view, layering
from loopreg.threads import REGISTER_THREADS, cpu_threads

Progress = Callable[[str, float], None]
# Scan points the network sees (it encodes 4096 of them) and the fits use. Clothed n=32 V2V with heavy weight
# 0.01: 3000 1.83 cm (3.9 s per scan), 6000 1.64 (4.7 s); with the ankles kept (bench): 6000 1.57 (4.1 s),
# 10000 1.46 (4.6 s).
FIT_POINTS = 10000
OFFSET_POINTS = 10000  # scan points the per-vertex offsets are fitted to
# The report's scan-to-body distances and scan_parts.ply's labels: for each scan point, the closest of the
# triangles of its 16 nearest body surface samples (`ClosestTriangle.query` with rtol = inf: a wider search
# only for points within the sampling radius of them). Proving the exact closest costs most on points far
# from the body (loose clothing). Clothed scan 0003's 121k points: exact 11.5 s, this 1.4 s, every distance
# within 0.001 mm of the exact one (BENCHMARKS, "Latest bench: end to end, with the output files").
EXPORT_RTOL = float("inf")


@dataclass
class RegisterOptions:
    units: str = "auto"
    up: str = "auto"
    offsets: bool = False
    model: str | None = None
    device: str = "auto"
    max_vertices: int = DEFAULT_MAX_VERTICES
    seed: int = 0
    network: bool = True  # use the shipped correspondence network when its weights exist
    formats: tuple[str, ...] = ("obj",)  # body mesh formats: obj (always written), ply, glb
    threads: int = REGISTER_THREADS  # CPU threads (torch, KD-trees); 0: the process's own setting

    def __post_init__(self) -> None:
        self.formats = export.parse_formats(self.formats)  # ValueError on an unknown format

    @classmethod
    def from_dict(cls, d: dict) -> RegisterOptions:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


_MODELS: dict[tuple[str | None, str], BodyModel] = {}


def get_model(name: str | None, device: torch.device) -> BodyModel:
    """Body models are loaded once per process and reused across jobs."""
    key = (name, str(device))
    if key not in _MODELS:
        _MODELS[key] = BodyModel.load(name).to(device)
    return _MODELS[key]


_FIELDS: dict[tuple[str | None, str], object] = {}


def get_field(name: str | None, device: torch.device):
    """The body model's diffused field (built once and cached on disk), loaded once per process."""
    key = (name, str(device))
    if key not in _FIELDS:
        from loopreg.body.field import BodyField

        _FIELDS[key] = BodyField.for_model(get_model(name, device).data).to(device)
    return _FIELDS[key]


_NETWORKS: dict[str, object] = {}


def get_network(device: torch.device):
    """The shipped correspondence network, loaded once per process (None without weights)."""
    if str(device) not in _NETWORKS:
        from loopreg.net import load_corrnet

        _NETWORKS[str(device)] = load_corrnet(str(device))
    return _NETWORKS[str(device)]


def correspondences(net, model: BodyModel, points: np.ndarray, seed: int) -> dict:
    """Predicted canonical points for the fit points, their confidence, and a robust Procrustes pose; also
    the orientation search's runner-up (its axes, and how far its score trails the winner's)."""
    pred = net.predict(points, seed=seed)
    out = _from_labels(model, points, pred.parts, pred.canon, pred.prob.max(1))
    out["runner_up"] = (pred.runner_up_axes, pred.orientation_score - pred.runner_up_score)
    return out


def correspondences_oriented(net, model: BodyModel, points: np.ndarray, axes: np.ndarray, seed: int) -> dict:
    """As `correspondences`, with the body's axes given (e.g. the orientation search's runner-up)."""
    from loopreg.net.correspond import predict_axes

    parts, canon, prob, _ = predict_axes(net, points, axes, seed)
    return _from_labels(model, points, parts, canon, prob.max(1))


def _from_labels(model: BodyModel, points: np.ndarray, parts, canon, conf) -> dict:
    from scipy.spatial.transform import Rotation

    from loopreg.fit.init import robust_procrustes

    R, t, _ = robust_procrustes(canon.astype(np.float64), points.astype(np.float64), conf)
    j0 = model.rest().joints[0, 0].detach().cpu().double().numpy()
    transl = t - j0 + R @ j0  # smplx rotates about the root joint
    init = (
        torch.as_tensor(Rotation.from_matrix(R).as_rotvec(), dtype=torch.float32),
        torch.as_tensor(transl, dtype=torch.float32),
    )
    return {
        "parts": parts,
        "corr": torch.as_tensor(canon, dtype=torch.float32),
        "corr_weights": torch.as_tensor(conf, dtype=torch.float32),
        "extra_init": init,
    }


@dataclass
class FitPlan:
    """How a scan with network correspondences is fitted: loop fit, then a short surface fit from it.

    The surface fit starts from the loop fit (a short, low-rate run) and can keep its correspondences' loop
    loss as an anchor (anchor_weight). Off by default: with the shipped network, on the first 10 scans of the
    n=32 bench suites, anchor 1.0 / 0.2 / 0 gave V2V mean 2.01 / 1.26 / 1.06 cm (minimal) and 4.21 / 4.24 /
    4.17 cm (clothed; median 3.10 / 2.76 / 2.51): the anchor keeps the network's correspondence bias
    (scripts/anchor_ablation.py).

    The safety net (`fallback`) is the surface fit from hypotheses (the four yaws + the correspondences'
    Procrustes pose; ~3x the loop path's time); the fit with the lower surface data term (`surface_loss`)
    wins. "never"; "always"; "auto" (default): only when the loop fit looks failed: less than
    fallback_inliers of the (weighted) correspondences end within loop.inlier_m (3 cm) of their scan points
    (`LoopFitResult.inliers`; measured with ground-truth correspondences: 0.98-1.0 on `minimal` scans,
    0.63-0.99 on `clothed` ones; network checkpoints at 250 / 500 training steps on `minimal`: 0.49-0.57 /
    0.81-0.87; an upside-down orientation search: 0.24). The surface loss is a poor judge between two
    plausible fits (a chamfer cannot tell front from back and prefers a body on the clothes), hence only a
    clear win counts: the fallback must have less than fallback_margin x the loop path's surface loss
    (a clothed scan measured 0.41 with the loop path the right one; the upside-down case 0.05). With
    fallback_corr the fallback's rigid stage also scores the correspondences (the old pipeline); off by
    default: a loop fit fails mostly when the correspondences are wrong as a whole.
    """

    loop: LoopFitConfig = field(default_factory=LoopFitConfig)
    surface: SurfaceFitConfig = field(default_factory=SurfaceFitConfig)
    anchor_weight: float = 0.0  # loop-loss anchor in the surface fit (off: see above)
    # The same anchor for single views (below), in place of anchor_weight: the loop fit's pose stays where
    # the chamfer of one seen side cannot tell. Screened (scripts/scan_report.py, 2026-11-27, 4 x 2048 labels)
    # partial n=32 V2V mean 0 / 0.2 / 1.0: 2.97 / 2.86 / 3.05 cm (3 failures each); wild's 9 single views
    # 0 -> 0.2: 3.27 -> 3.26 cm.
    single_view_anchor: float = 0.2
    # ... and for scans in heavy clothing (over heavy_share of the scan outside the loop-fit body, below;
    # single views too, in place of single_view_anchor: partial's 6 heavy scans 22.9 -> 21.6 cm summed,
    # 3.0: 21.3): a chamfer on a loose garment pulls the body into it. Screened with the 2026-11-27 09:35
    # weights (n=32, 0 -> 1.0): clothed 1.34 -> 1.31 cm (its 8 heavy scans -0.75..+0.30), wild 2.41 -> 2.34 (9
    # heavy scans -0.89..+0.65; skirts on bent bodies 7.08 -> 6.28, 6.95 -> 5.73, still failures).
    heavy_anchor: float = 1.0
    # ... and for those the loop fit runs again with the outward part of its residuals beyond the margin
    # weighted heavy_loop_outside (loop.clothed_r2; 1: off), from the same start; the anchor uses it too.
    heavy_loop_outside: float = 0.01
    fallback: str = "auto"
    fallback_inliers: float = 0.6
    fallback_margin: float = 0.3
    fallback_corr: bool = False
    orientation_margin: float = 1.5  # runner-up orientation within this score (logit) of the winner: fit both
    # Body-inside-clothes prior: when more than clothed_share of the scan points lie clothed_far_m outside
    # the loop-fit body (measured: minimal scans <= 0.05, clothed >= 0.09), the surface fit weighs pairs
    # whose scan point is outside the body clothed_outside_weight times (surface.chamfer_terms; 1: off).
    # Heavier clothing (more than heavy_share outside) gets heavy_outside_weight.
    clothed_share: float = 0.08
    clothed_far_m: float = 0.01
    clothed_outside_weight: float = 0.1
    heavy_share: float = 0.4
    # A single view's share counts heavy from 0.25: with the loop refit (heavy_loop_outside), partial n=32
    # V2V 2.71 -> 2.66 cm, each of its 4 scans in 0.25-0.4 better (0.12: 2.64, 3 of 10 more worse; 0: 2.75).
    single_view_heavy_share: float = 0.25
    heavy_outside_weight: float = 0.01  # 0.03 -> 0.01: clothed n=32 V2V 1.94 -> 1.83 cm (3000 points)
    # Single-view scans: a depth camera sees one surface per ray, so along some direction the scan's points
    # stack in one layer (visibility.layering: mean depth spread per 2 cm cell, the least over 96 directions;
    # measured: depth views 0.014-0.055 m, full scans 0.094-0.298 on the four n=32 suites and partial n=16
    # seed 3000). Below single_layer_m the surface fit's body->scan term counts only the loop-fit body's
    # vertices visible from the view (visibility.estimate_view): the unseen side is not pulled onto the seen
    # surface. Was: the view's recall of the seen body vertices above 0.58 (then 0.55); a loop fit with a
    # misplaced limb lowers it (partial 16, 17: 0.58; seed 3000 scan 6: 0.54, its hidden arm 52 cm off).
    single_layer_m: float = 0.07
    # Single-view scans: joints with fewer than unseen_share of the scan points on the parts they move keep
    # the loop fit's pose in the surface fit (surface.joint_support; 0: off). Not on full scans: there a
    # part without points near the loop-fit body is one the loop fit misplaced, for the surface fit to mend.
    unseen_share: float = 0.03
    # ... and those with under empty_share (nothing but strays) start the surface fit from the pose prior:
    # the one-Gaussian prior's median pose (loop.prior "gaussian"): partial n=32 V2V 3.60 -> 3.52 cm (0.01:
    # 3.55; all unseen joints, 0.03: ~4.1), wild's 9 single views: 0020 6.4 -> 2.9 cm, 0008 5.6 -> 5.0
    # (/tmp/diag/cfg.py, one thread); now the mixture's library pose nearest the seen joints
    # (`PoseMixture.complete`; screened 2026-11-27 with the third-cycle weights: partial 2.53 -> 2.38 cm
    # together with the mixture in the loop fit; 0.03, all unseen joints filled: 2.36, 15 of 32 worse).
    empty_share: float = 0.003
    # SMPL joints the surface fit leaves at the loop fit's pose: the ankles. A chamfer cannot tell a foot's
    # angle inside a shoe (sole, toe box); measured (6000 points): clothed V2V 1.64 -> 1.57 cm (first 16 of
    # n=32), 2.09 -> 1.86 (clothed n=16 seed 3000), minimal 0.84 -> 0.83; ankles + toes 1.56, toes alone
    # 1.64, + wrists and hands 1.61.
    loop_joints: tuple[int, ...] = (7, 8)
    # Fit the loop twice, from the T-pose and from the pose prior's median pose, and keep the lower final
    # loop objective. Off: +1.1 s per scan for V2V 0.93 -> 0.93 cm (minimal), 1.94 -> 1.88 (clothed), n=32.
    prior_start: bool = False


@torch.no_grad()
def _posed_vertices(model: BodyModel, fit: LoopFitResult) -> torch.Tensor:
    """(V,3) the body at a loop fit's parameters."""
    return model(**{k: v.reshape(1, -1) for k, v in fit.as_init().items()}).vertices[0]


def fit_correspondences(
    model: BodyModel,
    scan: torch.Tensor,
    corr: dict,
    plan: FitPlan,
    model_name: str | None = None,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    alternative: dict | None = None,
) -> tuple[FitResult, dict]:
    """Loop fit from the correspondences' Procrustes pose, then a surface fit from its result (+ fallback).

    `alternative`: correspondences from another orientation (the search's runner-up, when ambiguous); both
    are loop-fitted and the one with more inliers is kept (LoopReg: the best hypothesis by loop loss).
    Returns the fit and a summary: method, which orientation won, the loop fit's agreement, the surface
    losses (loop path, fallback), the share of scan points outside the loop-fit body and whether the
    body-inside-clothes prior was on.
    """
    if plan.fallback not in ("auto", "always", "never"):
        raise ValueError(f"fallback must be auto, always or never, not {plan.fallback!r}")
    report = progress or (lambda stage, frac: None)
    timings = {} if timings is None else timings
    t = time.perf_counter()
    body_field = get_field(model_name, model.v_template.device)
    orient, transl = corr["extra_init"]
    loop = fit_loop(
        model, body_field, scan, corr["corr"], corr["corr_weights"], orient, transl, plan.loop, report
    )
    orientation = "search winner"
    start = "prior pose" if plan.loop.start_at_prior else "T-pose"
    if plan.prior_start:
        cfg2 = replace(plan.loop, start_at_prior=not plan.loop.start_at_prior)
        loop2 = fit_loop(model, body_field, scan, corr["corr"], corr["corr_weights"], orient, transl, cfg2)
        if loop2.loss < loop.loss:
            loop, start = loop2, "prior pose" if cfg2.start_at_prior else "T-pose"
    if alternative is not None:
        o2, t2 = alternative["extra_init"]
        w2 = alternative["corr_weights"]
        loop2 = fit_loop(model, body_field, scan, alternative["corr"], w2, o2, t2, plan.loop)
        if loop2.inliers > loop.inliers:
            loop, corr, orientation = loop2, alternative, "search runner-up (more loop inliers)"
    timings["loop_fit"] = time.perf_counter() - t
    t = time.perf_counter()
    loop_body = _posed_vertices(model, loop)
    share = outside_share(loop_body, model.faces, scan, plan.clothed_far_m)
    clothed = share > plan.clothed_share and plan.clothed_outside_weight != 1.0
    layered = float(layering(scan.to(loop_body)).min())
    partial = layered < plan.single_layer_m
    heavy = share > (plan.single_view_heavy_share if partial else plan.heavy_share)
    loop_outside = plan.heavy_loop_outside if heavy else plan.loop.outside_weight
    if loop_outside != plan.loop.outside_weight:  # heavy clothing: refit the loop, cloth discounted
        t2 = time.perf_counter()
        cfg2 = replace(plan.loop, outside_weight=loop_outside)
        o2, tr2 = corr["extra_init"]
        loop = fit_loop(model, body_field, scan, corr["corr"], corr["corr_weights"], o2, tr2, cfg2)
        loop_body = _posed_vertices(model, loop)
        timings["loop_fit"] += time.perf_counter() - t2
        t = time.perf_counter()
    weight = plan.heavy_outside_weight if heavy else plan.clothed_outside_weight
    surface = replace(plan.surface, outside_weight=weight) if clothed else plan.surface
    view = estimate_view(loop_body, model.faces, scan) if partial else None  # which side the camera saw
    mask = view.visible if partial else None
    anchor_weight = plan.heavy_anchor if heavy else plan.single_view_anchor if partial else plan.anchor_weight
    anchor = None
    if anchor_weight > 0:
        weights = corr["corr_weights"]
        anchor = loop_anchor(
            body_field, scan, loop, weights, plan.loop.robust_b_m, anchor_weight, loop_outside,
            plan.loop.outside_margin_m,
        )  # fmt: skip
    init = loop.as_init()
    frozen = torch.zeros(model.num_joints - 1, dtype=torch.bool, device=loop_body.device)
    frozen[[j - 1 for j in plan.loop_joints]] = True
    if partial and plan.unseen_share > 0:
        support = joint_support(model, loop_body, scan)
        frozen |= support < plan.unseen_share
        empty = support < plan.empty_share
        if plan.loop.prior == "mixture":  # the library pose the seen joints match
            seen = support >= plan.unseen_share
            init["body_pose"] = pose_mixture().complete(init["body_pose"], seen, empty)
        else:
            pose = init["body_pose"].reshape(-1, 3).clone()
            pose[empty] = pose_prior().body_pose.reshape(-1, 3).to(pose)[empty]
            init["body_pose"] = pose.reshape(-1)
    fit = fit_surface(
        model,
        scan,
        surface,
        report,
        limit_violation,
        init=init,
        anchor=anchor,
        body_mask=mask,
        frozen_joints=frozen,
    )
    info = {
        "method": "network correspondences + loop fit + surface fit",
        "orientation": orientation,
        "loop_start": start,
        "agreement": loop.agreement,
        "inliers": loop.inliers,
        "surface_loss": surface_loss(fit.vertices, scan, plan.surface),
        "fallback_surface_loss": None,
        "outside_share": share,
        "clothed": clothed,
        "outside_weight": weight if clothed else 1.0,
        "view_recall": view.recall if view is not None else None,  # single views only
        "layering_m": layered,
        "single_view": partial,
        "loop_outside_weight": loop_outside,  # heavy clothing: the loop refit's outward discount
        "anchor_weight": anchor_weight,  # the loop fit's loss kept in the surface fit (single view, heavy)
        "frozen_joints": int(frozen.sum()),  # loop_joints included
    }
    if plan.fallback == "always" or (plan.fallback == "auto" and loop.inliers < plan.fallback_inliers):
        extra = corr if plan.fallback_corr else {"extra_init": corr["extra_init"]}

        def fallback_report(stage: str, frac: float) -> None:
            report("fit_fallback", frac)

        old = fit_surface(model, scan, surface, fallback_report, limit_violation, **extra)
        info["fallback_surface_loss"] = surface_loss(old.vertices, scan, plan.surface)
        if info["fallback_surface_loss"] < plan.fallback_margin * info["surface_loss"]:
            fit = old
            info["method"] = "surface fit from hypotheses (the loop fit lost on the surface loss)"
    timings["fit"] = time.perf_counter() - t
    return fit, info


def register_loaded(
    scan: Scan,
    options: RegisterOptions,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    plan: FitPlan | None = None,
) -> tuple[dict, Callable[[Path], dict]]:
    """Register an already loaded scan; returns the fit summary and a writer for the output folder.

    `timings` may hold earlier stages (e.g. loading); the report's total includes them. `plan`: how a scan
    with network correspondences is fitted (default FitPlan()). Both run on `options.threads` CPU threads.
    """
    with cpu_threads(options.threads):
        summary, write = _register_loaded(scan, options, progress, timings, plan)

    def write_with_threads(out_dir: Path) -> dict:
        with cpu_threads(options.threads):
            return write(out_dir)

    return summary, write_with_threads


def _register_loaded(
    scan: Scan,
    options: RegisterOptions,
    progress: Progress | None,
    timings: dict[str, float] | None,
    plan: FitPlan | None,
) -> tuple[dict, Callable[[Path], dict]]:
    report = progress or (lambda stage, frac: None)
    timings = dict(timings or {})
    t = time.perf_counter()
    device = pick_device(options.device)
    model = get_model(options.model, device)
    norm = normalise(scan.points, options.units, options.up)
    pts = norm.apply(scan.points)
    rng = np.random.default_rng(options.seed)
    sub = pts[rng.choice(len(pts), size=min(FIT_POINTS, len(pts)), replace=False)]
    timings["normalise"] = time.perf_counter() - t
    report("normalise", 1.0)

    scan_t = torch.as_tensor(sub, dtype=torch.float32)
    net = get_network(device) if options.network else None
    plan = plan or FitPlan()
    corr, alternative, predicted = {}, None, None
    if net is not None:
        t = time.perf_counter()
        corr = correspondences(net, model, sub, options.seed)
        alt_axes, margin = corr.pop("runner_up")
        if margin < plan.orientation_margin:  # ambiguous orientation: the loop fit decides
            alternative = correspondences_oriented(net, model, sub, alt_axes, options.seed)
        timings["correspond"] = time.perf_counter() - t
        report("correspond", 1.0)
    if corr:
        fit, info = fit_correspondences(
            model, scan_t, corr, plan, options.model, report, timings, alternative
        )
        used = alternative if info["orientation"].startswith("search runner-up") else corr
        predicted = {"points": sub, "parts": used["parts"], "canon": used["corr"].numpy()}
        method = info["method"]
    else:
        t = time.perf_counter()
        fit = fit_surface(model, scan_t, SurfaceFitConfig(), progress=report, pose_penalty=limit_violation)
        timings["fit"] = time.perf_counter() - t
        info = {"method": "surface fit (baseline)"}
        method = info["method"]

    def write(out_dir: Path) -> dict:
        t0 = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        to_scan = norm.to_scan
        faces = model.faces.cpu().numpy()
        body = fit.vertices.cpu().numpy().astype(np.float64)
        body_scan = export.transform(body, to_scan)
        params = export.write_params(
            out_dir / "params.json", fit, to_scan, model.data.meta, norm.units, norm.up
        )
        export.write_meshes(out_dir, "body", body_scan, faces, options.formats)
        offsets_mm, offsets_s = None, 0.0
        if options.offsets:  # the clothed body: body + D, fitted to (a subsample of) the scan
            t1 = time.perf_counter()
            pick = np.random.default_rng(options.seed).permutation(len(pts))[:OFFSET_POINTS]
            verts = fit.vertices
            D = fit_offsets(verts, faces, torch.as_tensor(pts[pick], dtype=verts.dtype, device=verts.device))
            clothed = body + D.cpu().numpy().astype(np.float64)
            offsets_mm = distance_summary(point_to_surface(pts, clothed, faces, EXPORT_RTOL), 1000.0)
            clothed_scan = export.transform(clothed, to_scan)
            export.write_meshes(out_dir, "body_offsets", clothed_scan, faces, options.formats)
            offsets_s = timings["offsets"] = time.perf_counter() - t1
            report("offsets", 1.0)
        tri, dist = closest_triangles(pts, body, faces, EXPORT_RTOL)
        labels = model.parts.cpu().numpy()[faces[tri, 0]]
        export.write_scan_parts(out_dir / "scan_parts.ply", scan.points, scan.faces, labels)
        export.write_preview(out_dir / "preview.png", pts, body, faces)
        timings["export"] = time.perf_counter() - t0 - offsets_s
        timings["total"] = sum(v for k, v in timings.items() if k != "total")  # write may run twice
        rep = {
            "scan_to_body_mm": distance_summary(dist, 1000.0),
            "scan_to_body_offsets_mm": offsets_mm,
            "per_part_mm": {PART_NAMES[p]: float(dist[labels == p].mean() * 1000) for p in np.unique(labels)},
            "timings_s": timings,
            "device": f"{device.type} ({platform.machine()})",
            "cpu_threads": torch.get_num_threads(),
            "num_scan_points": int(len(scan.points)),
            "method": method,
        }
        (out_dir / "report.json").write_text(json.dumps(rep, indent=1))
        report("export", 1.0)
        return {"params": params, "report": rep}

    return {"fit": fit, "normalisation": norm, "correspondences": predicted, "fit_info": info}, write


def register_scan(
    scan_path: Path, out_dir: Path, options: dict | RegisterOptions, progress: Progress | None = None
) -> dict:
    """The worker's and CLI's entry point: read, register, write the contract's files."""
    opts = options if isinstance(options, RegisterOptions) else RegisterOptions.from_dict(options)
    t = time.perf_counter()
    scan = load_scan(scan_path, opts.max_vertices)
    load_s = time.perf_counter() - t
    if progress:
        progress("load", 1.0)
    _, write = register_loaded(scan, opts, progress, timings={"load": load_s})
    return write(Path(out_dir))["report"]


def load_pipeline(device: str = "auto") -> Callable[..., dict]:
    """A worker's pipeline, ready: `register_scan`, after one registration (and export) of the default
    body's rest-pose vertices has loaded the body model, its diffused field and the network and paid the
    one-off costs of a first fit (torch's first optimizer step imports its compiler stack). The worker
    calls this once at start (worker/pipeline.py), so its first job is as fast as the later ones."""
    import tempfile

    model = get_model(None, pick_device(device))
    body = model.rest().vertices[0].detach().cpu().double().numpy()
    opts = RegisterOptions(device=device)
    _, write = register_loaded(Scan(body), opts)
    with tempfile.TemporaryDirectory(prefix="loopreg-warmup-") as out:
        write(Path(out))
    return register_scan
