"""Render contact sheets of the pose prior: 32 sampled poses and the unperturbed pose library.

python scripts/pose_sheet.py [--seed 0] [--out docs/pose_contact_sheet.png] [--library docs/pose_library.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from loopreg.body import BodyModel
from loopreg.data.poses import PoseSample, library_poses, sample_poses
from loopreg.viz.render import grid, render_mesh

TILE = (256, 192)  # (h, w)


def render_tiles(model: BodyModel, poses: PoseSample, views: tuple[str, ...], labels: list[str]) -> list:
    with torch.no_grad():
        verts = model(body_pose=poses.body_pose, global_orient=poses.global_orient).vertices.numpy()
    faces = model.faces.numpy()
    tiles = []
    for v, label in zip(verts, labels, strict=True):
        for view in views:
            im = Image.fromarray(render_mesh(v, faces, view=view, size=TILE, n_points=80_000))
            ImageDraw.Draw(im).text((4, 2), label, fill=(0, 0, 0))
            tiles.append(np.asarray(im))
    return tiles


def save(tiles: list, cols: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(tiles, cols)).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("docs/pose_contact_sheet.png"))
    ap.add_argument("--library", default="docs/pose_library.png", help="library sheet path; empty: skip")
    ap.add_argument("--side", action="store_true", help="add a side view next to each sample")
    args = ap.parse_args()

    model = BodyModel.load()
    sample = sample_poses(args.n, seed=args.seed)
    views = ("front", "side") if args.side else ("front",)
    labels = [
        f"{i} {n}{' (m)' if m else ''}"
        for i, (n, m) in enumerate(zip(sample.names, sample.mirrored, strict=True))
    ]
    save(render_tiles(model, sample, views, labels), 8, args.out)
    if args.library:
        lib = library_poses()
        save(render_tiles(model, lib, ("front", "side"), lib.names), 6, Path(args.library))


if __name__ == "__main__":
    main()
