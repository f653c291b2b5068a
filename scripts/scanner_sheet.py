"""Contact sheets of simulated scans (loopreg.data.scanner).

docs/scanner_clothed.png: clothed scans with the GT body. Per row: a front render with the scan cut away
on the model's left half (the GT body in orange shows through only where the scan is cut away, or where it
would poke out), a coronal and a sagittal cross-section (orange: body, light blue: clothing and hair between
body and scan surface, red: body outside the scan: only specks at bare fingertips).
docs/scanner_examples.png: one scan per suite (minimal, clothed, noisy, partial, wild) as stored.

    python scripts/scanner_sheet.py [--out docs] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from loopreg.body import BodyModel
from loopreg.data import scanner as S
from loopreg.viz.render import face_normals, grid, sample_surface, save_png, splat

ORANGE = np.array([235, 130, 60])
BLUE = np.array([120, 150, 230])
LIGHT = np.array([0.3, 0.4, 0.87])
SIDE = np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])  # look from +x


def posed_bodies(model: BodyModel, seed: int) -> np.ndarray:
    """A few hand-made poses (A-pose, walk, arms forward, T-pose) with random shapes."""
    poses = np.zeros((4, 23, 3))
    poses[:3, 15, 2], poses[:3, 16, 2] = -1.1, 1.1  # shoulders down
    poses[1, 0, 0], poses[1, 1, 0], poses[1, 4, 0] = -0.45, 0.3, 0.6  # walk: hips, right knee
    poses[2, 15], poses[2, 16] = [0, 0.9, -0.9], [0, -0.9, 0.9]  # arms forward-down
    poses[2, 17, 1], poses[2, 18, 1] = -0.8, 0.8  # elbows bent
    poses[3, 14, 0] = 0.2  # T-pose, head tilted
    betas = torch.randn(4, 10, generator=torch.Generator().manual_seed(seed)) * 0.8
    out = model(betas=betas, body_pose=torch.tensor(poses.reshape(4, 69), dtype=torch.float32))
    return out.vertices.detach().numpy().astype(np.float64)


def shaded(v: np.ndarray, f: np.ndarray, n: int, base: np.ndarray, seed: int = 0):
    pts, face = sample_surface(v, f, n, seed)
    shade = np.clip(face_normals(v, f)[face] @ LIGHT, 0.15, 1.0)
    return pts, (base * (0.25 + 0.75 * shade)[:, None]).astype(np.uint8)


def cutaway(scan: S.Scan, body: S.Body, size: tuple[int, int]) -> np.ndarray:
    """Front view: GT body (orange) with the scan (blue) drawn only on the model's right half (x < 0)."""
    bp, bc = shaded(body.vertices, body.faces, 300_000, ORANGE)
    sv = scan.vertices.astype(np.float64)
    sp, sc = shaded(sv, scan.faces, 500_000, BLUE, 1)
    keep = sp[:, 0] < 0
    lo, hi = np.minimum(sv.min(0), body.vertices.min(0)), np.maximum(sv.max(0), body.vertices.max(0))
    img, depth = splat(bp, bc, size, (lo, hi))
    img, _ = splat(sp[keep], sc[keep], size, (lo, hi), image=img, depth=depth)
    return img


def section(scan: S.Scan, body: S.Body, plane: str, size: tuple[int, int]) -> np.ndarray:
    """Cross-section: coronal (plane z = torso centre, seen from the front) or sagittal (x = left hip,
    seen from the side). Orange body, blue clothing, red body outside the scan, dark outline of the scan."""
    h, w = size
    sv = scan.vertices.astype(np.float64)
    lo, hi = np.minimum(sv.min(0), body.vertices.min(0)), np.maximum(sv.max(0), body.vertices.max(0))
    if plane == "coronal":
        ax, value = (0, 1), body.vertices[body.parts == S.P["torso"], 2].mean()
    else:
        ax, value = (2, 1), body.landmarks["l_hip"][0]
    span = max((hi[ax[0]] - lo[ax[0]]) / (w - 1), (hi[ax[1]] - lo[ax[1]]) / (h - 1)) / 0.95
    cx, cy = (lo[ax[0]] + hi[ax[0]]) / 2, (lo[ax[1]] + hi[ax[1]]) / 2
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    pts = np.zeros((h * w, 3))
    pts[:, ax[0]] = cx + (jj.ravel() - (w - 1) / 2) * span * (1 if plane == "coronal" else -1)
    pts[:, ax[1]] = cy - (ii.ravel() - (h - 1) / 2) * span
    pts[:, 3 - sum(ax)] = value
    in_b = (S.inside_mesh(body.vertices, body.faces, pts) > 0).reshape(h, w)
    in_s = (S.inside_mesh(sv, scan.faces, pts) > 0).reshape(h, w)
    img = np.full((h, w, 3), 255, np.uint8)
    img[in_s & ~in_b] = (175, 195, 245)
    img[in_b] = ORANGE
    img[in_b & ~in_s] = (220, 0, 0)
    edge = np.zeros_like(in_s)
    edge[1:] |= in_s[1:] != in_s[:-1]
    edge[:, 1:] |= in_s[:, 1:] != in_s[:, :-1]
    img[edge] = (40, 60, 160)
    return img


def points_image(scan: S.Scan, size: tuple[int, int], R: np.ndarray | None = None) -> np.ndarray:
    p = scan.vertices.astype(np.float64)
    n = scan.normals.astype(np.float64) if scan.normals is not None else np.zeros_like(p)
    if R is not None:
        p, n = p @ R.T, n @ R.T
    shade = np.clip(np.abs(n @ LIGHT), 0.2, 1.0)
    cols = (BLUE * shade[:, None]).astype(np.uint8)
    return splat(p, cols, size, (p.min(0), p.max(0)), radius=1)[0]


def mesh_image(scan: S.Scan, size: tuple[int, int], R: np.ndarray | None = None) -> np.ndarray:
    v = scan.vertices.astype(np.float64)
    v = v if R is None else v @ R.T
    pts, cols = shaded(v, scan.faces, 400_000, BLUE)
    return splat(pts, cols, size, (v.min(0), v.max(0)))[0]


def caption(img: np.ndarray, text: str, size: int = 15) -> np.ndarray:
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((6, 4), text, fill=(0, 0, 0), font=ImageFont.load_default(size=size))
    return np.asarray(im)


def header(width: int, lines: list[str]) -> np.ndarray:
    """A white strip with text lines; a line starting with a colour name gets a swatch of that colour."""
    swatch = {"orange": ORANGE, "blue": BLUE, "light": (175, 195, 245), "red": (220, 0, 0)}
    im = Image.new("RGB", (width, 8 + 24 * len(lines)), (255, 255, 255))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=17)
    for i, line in enumerate(lines):
        key, _, rest = line.partition(":")
        x = 8
        if key in swatch:
            d.rectangle((x, 8 + 24 * i, x + 26, 26 + 24 * i), fill=tuple(int(c) for c in swatch[key]))
            x, line = x + 34, rest.strip()
        d.text((x, 7 + 24 * i), line, fill=(0, 0, 0), font=font)
    return np.asarray(im)


def view_to_y_up(scan: S.Scan, T: np.ndarray) -> np.ndarray:
    """Rotation that shows a scan upright: undoes to_scan's rotation (for display only)."""
    return (T[:3, :3] / np.cbrt(np.linalg.det(T[:3, :3]))).T


OUTFITS = [
    dict(
        top="tight_shirt",
        top_amp=0.006,
        sleeve=0.5,
        hem=-0.05,
        bottom="tight_trousers",
        bottom_amp=0.006,
        leg=2.0,
        waist=0.25,
        hair="short",
        hair_amp=0.02,
        shoes=True,
        shoe_amp=0.008,
        sole=0.02,
    ),
    dict(
        top="loose_shirt",
        top_amp=0.035,
        sleeve=1.9,
        hem=-0.1,
        bottom="loose_trousers",
        bottom_amp=0.03,
        leg=1.95,
        waist=0.25,
        hair="long",
        hair_amp=0.04,
        shoes=True,
        shoe_amp=0.01,
        sole=0.025,
    ),
    dict(
        top="tight_shirt",
        top_amp=0.005,
        sleeve=0.1,
        hem=0.0,
        bottom="skirt",
        bottom_amp=0.025,
        waist=0.3,
        skirt_length=0.75,
        skirt_flare=0.25,
        hair="long",
        hair_amp=0.05,
    ),
    dict(
        top="jacket",
        top_amp=0.045,
        sleeve=2.0,
        hem=-0.25,
        bottom="loose_trousers",
        bottom_amp=0.02,
        leg=2.0,
        waist=0.25,
        hair="short",
        hair_amp=0.06,
        shoes=True,
        shoe_amp=0.012,
        sole=0.03,
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = BodyModel.load()
    faces, parts = model.faces.numpy().astype(np.int64), model.parts.numpy()
    V = posed_bodies(model, args.seed)
    size = (520, 400)

    rows = []
    for k, spec in enumerate(OUTFITS):
        rng = np.random.default_rng(args.seed + k)
        body = S.Body(V[k % len(V)], faces, parts)
        scan = S.remesh(S.clothe(body, rng, S.Outfit(**spec)), rng, 60_000)
        label = f"{spec['top']} + {spec['bottom']}, hair {spec.get('hair')}: {len(scan.vertices)} verts"
        rows += [
            caption(cutaway(scan, body, size), label),
            caption(section(scan, body, "coronal", size), "coronal section (through the torso)"),
            caption(section(scan, body, "sagittal", size), "sagittal section (through the left hip)"),
        ]
    sheet = grid(rows, 3)
    top = header(
        sheet.shape[1],
        [
            "Clothed scans (remeshed, no noise) and GT body. Left: scan cut away on the model's left half.",
            "blue: scan surface (left column). On bare skin (face, hands) scan and body coincide: both show.",
            "orange: GT body (its surface, left; its cross-section, middle and right)",
            "light: clothing and hair: inside the scan, outside the body",
            "red: body outside the scan: only single-pixel specks at bare fingertips and ears (< a voxel)",
        ],
    )
    save_png(np.concatenate([top, sheet]), out / "scanner_clothed.png")

    ims = []
    for k, suite in enumerate(("minimal", "clothed", "noisy", "partial", "wild")):
        rng = np.random.default_rng(args.seed + 100 + k)
        scan, T, meta = S.simulate(V[k % len(V)], faces, parts, rng, suite)
        R = view_to_y_up(scan, T)
        img = mesh_image(scan, size, R) if scan.is_mesh else points_image(scan, size, R)
        tr = meta["transform"]
        ims.append(
            caption(
                img, f"{suite}: {meta['output']}, {len(scan.vertices)} pts, {tr['units']}, {tr['up_axis']}-up"
            )
        )
        if meta["output"] == "partial":  # from the camera, and from 90 degrees to its right
            D = np.diag([1.0, -1.0, -1.0]) @ np.array(meta["depth_view"]["world_to_camera"])[:3, :3] @ R
            ims[-1] = caption(
                points_image(scan, size, D), f"{suite}: depth view from the camera, {len(scan.vertices)} pts"
            )
            ims.append(
                caption(points_image(scan, size, SIDE.T @ D), f"{suite}: the same points seen from the side")
            )
    save_png(grid(ims, 3), out / "scanner_examples.png")
    print(f"wrote {out / 'scanner_clothed.png'} and {out / 'scanner_examples.png'}")


if __name__ == "__main__":
    main()
