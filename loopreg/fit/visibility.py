"""Single-view scans: from which direction was the scan seen, and which body vertices could it see?

A depth camera sees one side of the body. The surface fit's body->scan term must not pull the unseen side
(an arm behind the torso) onto the seen surface, so for such a scan it counts only the body vertices visible
from the scan's view. The view is estimated from a fitted body (the loop fit): among directions on a sphere,
the one whose visible vertices best cover the body vertices that have scan points near them. Orthographic
z-buffer on a grid of the body's surface samples (vertices and face points), all directions in one batch.
Whether a scan is a single view at all is told by the scan alone (`layering`): one surface per camera ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.spatial import cKDTree

from loopreg.fit.offsets import vertex_normals
from loopreg.geometry import sphere_directions

CELL_M = 0.02  # z-buffer cell
DEPTH_TOL_M = 0.025  # a vertex within this of its cell's front surface is visible
NEAR_M = 0.03  # a body vertex is "seen" when a scan point lies within this, outside its surface
BEHIND_M = 0.01  # ... (at most this far behind the vertex along its normal)
NUM_DIRECTIONS = 96
LAYER_POINTS = 10000  # layering: scan points per CELL_M cell size (the pipeline's fit points) ...
LAYER_HALF_SPAN_M = 1.5  # ... on a grid this far either side of the scan's median


@dataclass
class View:
    direction: torch.Tensor  # (3,) unit vector from the body towards the camera
    visible: torch.Tensor  # (V,) bool, body vertices visible from it
    recall: float  # share of the seen body vertices that are visible from the direction
    seen: float  # share of all body vertices with a scan point within NEAR_M


def surface_samples(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Vertices, face centroids and the midpoints between each centroid and its corners: (V + 4F, 3)."""
    tri = vertices[faces]  # (F,3,3)
    c = tri.mean(1)
    return torch.cat([vertices, c, ((tri + c[:, None]) / 2).reshape(-1, 3)])


def image_axes(directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit axes (D,3) each spanning, with the other, the image plane of each view direction (D,3)."""
    x_axis, y_axis = torch.eye(3, device=directions.device, dtype=directions.dtype)[:2]
    helper = torch.where(directions[:, :1].abs() < 0.9, x_axis, y_axis)  # any axis not along d
    u = torch.linalg.cross(directions, helper, dim=-1)
    u = u / u.norm(dim=-1, keepdim=True)
    return u, torch.linalg.cross(directions, u, dim=-1)


def view_directions() -> torch.Tensor:
    """The NUM_DIRECTIONS candidate view directions (a Fibonacci sphere), float32."""
    return torch.as_tensor(sphere_directions(NUM_DIRECTIONS), dtype=torch.float32)


def visible_vertices(vertices: torch.Tensor, faces: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(D,V) bool: vertex visible from an orthographic camera at infinity along each direction (D,3)."""
    dev = vertices.device
    d = directions.to(dev, vertices.dtype)
    u, w = image_axes(d)
    pts = surface_samples(vertices, faces)
    V, D = len(vertices), len(d)
    coords = torch.stack([pts @ u.T, pts @ w.T], -1)  # (P,D,2)
    height = pts @ d.T  # (P,D): larger is nearer the camera
    cell = torch.floor((coords - coords.amin(0)) / CELL_M).long()
    ncell = int(cell.max()) + 1
    key = (torch.arange(D, device=dev) * ncell + cell[..., 0]) * ncell + cell[..., 1]  # (P,D)
    front = torch.full((D * ncell * ncell,), -math.inf, device=dev, dtype=vertices.dtype)
    front.scatter_reduce_(0, key.reshape(-1), height.reshape(-1), "amax")
    front_v = front[key[:V].reshape(-1)].reshape(V, D)
    return (height[:V] >= front_v - DEPTH_TOL_M).T


@torch.no_grad()
def estimate_view(vertices: torch.Tensor, faces: torch.Tensor, scan: torch.Tensor) -> View:
    """The direction whose visible vertices of the body (V,3) best cover the body vertices with scan points
    near them (N,3, same frame). A full scan has no such direction: recall stays near a half; a depth view's
    own direction reaches ~0.9."""
    faces = faces.to(vertices.device).long()
    dist, idx = cKDTree(scan.detach().cpu().numpy()).query(vertices.detach().cpu().numpy(), k=1)
    off = scan.to(vertices)[torch.as_tensor(idx, device=vertices.device)] - vertices
    out = (off * vertex_normals(vertices, faces)).sum(-1) > -BEHIND_M
    seen = torch.as_tensor(dist < NEAR_M, device=vertices.device) & out
    dirs = view_directions()
    vis = visible_vertices(vertices.detach(), faces, dirs)  # (D,V)
    both = (vis & seen).sum(1)
    recall = both / seen.sum().clamp_min(1)
    best = int((both / (vis | seen).sum(1).clamp_min(1)).argmax())  # Jaccard: not just the most seen
    return View(dirs[best].to(vertices), vis[best], float(recall[best]), float(seen.float().mean()))


@torch.no_grad()
def layering(scan: torch.Tensor, directions: torch.Tensor | None = None) -> torch.Tensor:
    """(D,) mean depth spread (m) within the cells of the scan (N,3) projected along each direction
    (default: `view_directions()`).

    A depth camera sees one surface per ray: along its own direction a cell holds points of that one
    surface (a few cm of spread where it slopes), while a full scan has a front and a back along every
    direction (the body's depth, 15-30 cm). Needs no fitted body. Cells are CELL_M for LAYER_POINTS points
    and grow as sqrt(LAYER_POINTS / N) for fewer, so that a cell holds about as many points.
    """
    d = (view_directions() if directions is None else directions).to(scan)
    u, w = image_axes(d)
    coords = torch.stack([scan @ u.T, scan @ w.T], -1)  # (N,D,2)
    h = scan @ d.T  # (N,D)
    size = CELL_M * math.sqrt(max(1.0, LAYER_POINTS / max(len(scan), 1)))
    n = int(2 * LAYER_HALF_SPAN_M / size) + 1  # far outliers share the border cells: the grid stays small
    corner = coords.median(0).values - LAYER_HALF_SPAN_M
    cell = torch.floor((coords - corner) / size).long().clamp(0, n - 1)
    D = len(d)
    key = ((torch.arange(D, device=scan.device) * n + cell[..., 0]) * n + cell[..., 1]).reshape(-1)
    hi = torch.full((D * n * n,), -math.inf, device=scan.device, dtype=scan.dtype)
    lo = torch.full_like(hi, math.inf)
    hi.scatter_reduce_(0, key, h.reshape(-1), "amax")
    lo.scatter_reduce_(0, key, h.reshape(-1), "amin")
    spread = (hi - lo).reshape(D, -1)
    occupied = torch.isfinite(spread)
    return torch.where(occupied, spread, 0).sum(1) / occupied.sum(1)
