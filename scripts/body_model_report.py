"""Measure the default body model against anny itself; prints a markdown report.

Rig fidelity: unseen anny adults, posed by anny's own rig (104-bone LBS, every bone of a group turned
together), vs the default model posed with the same SMPL pose after projecting the body onto its 10
shape components. Run: .venv/bin/python scripts/body_model_report.py [--bodies 16] [--sigma 0.3]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from smplx.lbs import batch_rodrigues

from loopreg.body import SMPL_PARENTS, BodyModel
from loopreg.body.default_build import AnnySource, BuildConfig, make_resampler, tposed_bodies
from loopreg.body.registry import load_model_data


def world_rotations(pose: torch.Tensor) -> torch.Tensor:
    """(B,72) SMPL axis-angle -> (B,24,3,3) world rotations (24 joints, chained)."""
    R = batch_rodrigues(pose.reshape(-1, 3)).reshape(pose.shape[0], 24, 3, 3)
    W = [R[:, 0]]
    for j in range(1, 24):
        W.append(W[SMPL_PARENTS[j]] @ R[:, j])
    return torch.stack(W, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bodies", type=int, default=16)
    ap.add_argument("--sigma", type=float, default=0.3, help="std (rad) of each joint's axis-angle")
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    t0 = time.time()
    cfg = BuildConfig()
    src = AnnySource()
    V_all, _ = tposed_bodies(src, src.sample_phenotypes(cfg.num_samples, cfg))
    resample, _ = make_resampler(V_all.mean(0), src.faces, cfg)
    data = load_model_data()
    model = BodyModel(data).double()

    test_cfg = BuildConfig(num_samples=args.bodies, seed=args.seed)
    phen = src.sample_phenotypes(args.bodies, test_cfg)
    gen = torch.Generator().manual_seed(args.seed)
    pose = args.sigma * torch.randn(args.bodies, 72, generator=gen, dtype=torch.float64)
    pose[:, :3] = 0  # global rotation is rigid; compare the articulation
    rest = resample(tposed_bodies(src, phen)[0])
    posed = resample(tposed_bodies(src, phen, world_rotations(pose))[0])

    S = torch.as_tensor(data.shapedirs, dtype=torch.float64).reshape(-1, data.num_betas)
    delta = torch.as_tensor(rest - data.v_template[None], dtype=torch.float64).reshape(args.bodies, -1)
    betas = torch.linalg.lstsq(S, delta.T).solution.T
    ours_rest = model(betas=betas).vertices.detach().numpy()
    ours = model(betas=betas, body_pose=pose[:, 3:]).vertices.detach().numpy()
    e_rest = np.linalg.norm(ours_rest - rest, axis=-1) * 1000
    e_pose = np.linalg.norm(ours - posed, axis=-1) * 1000
    print("| figure | mean | p95 | max |\n|---|---|---|---|")
    for name, e in (
        ("shape only (rest T-pose), mm", e_rest),
        (f"posed (sigma {args.sigma} rad), mm", e_pose),
    ):
        print(f"| {name} | {e.mean():.2f} | {np.percentile(e, 95):.2f} | {e.max():.2f} |")
    per_body = e_pose.mean(1)
    span = f"{per_body.min():.2f}-{per_body.max():.2f} mm"
    print(f"\nper-body posed mean error: {span} over {args.bodies} unseen adults")
    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
