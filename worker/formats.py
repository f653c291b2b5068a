"""Write every output mesh in obj, ply and glb so the API only streams files."""

from __future__ import annotations

import logging
from pathlib import Path

import trimesh

KINDS = ("body", "body_offsets", "scan_parts")
FORMATS = ("obj", "ply", "glb")
log = logging.getLogger("loopreg.worker")


def add_formats(out_dir: Path) -> None:
    for kind in KINDS:
        src = next((out_dir / f"{kind}.{f}" for f in FORMATS if (out_dir / f"{kind}.{f}").exists()), None)
        if src is None:
            continue
        geom = None
        for fmt in FORMATS:
            dest = out_dir / f"{kind}.{fmt}"
            if dest.exists():
                continue
            try:
                geom = geom or trimesh.load(src, process=False)
                geom.export(dest)
            except Exception as exc:  # a point cloud has no OBJ/GLB form in some trimesh versions
                dest.unlink(missing_ok=True)
                log.info("no %s for %s: %s", fmt, kind, exc)
