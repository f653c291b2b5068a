"""BodyModel: a thin wrapper of smplx.SMPL that poses any SMPL-format model in batches."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.utils import Struct
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from loopreg.body.data import EXTRA_VERTEX_NAMES, BodyModelData
from loopreg.body.keypoints import guess_vertex_ids

SMPL_NUM_VERTICES = 6890
PARAM_KEYS = ("betas", "global_orient", "body_pose", "transl")  # a fit's parameters, as BodyModel takes them


@dataclass
class BodyOutput:
    vertices: torch.Tensor  # (B, V, 3)
    joints: torch.Tensor  # (B, J, 3) posed kinematic joints
    keypoints: torch.Tensor  # (B, K, 3) smplx extra keypoints (face, feet, fingertips)


class HasParams:
    """Mixin for fit results that hold the PARAM_KEYS tensors as attributes."""

    def as_init(self) -> dict[str, torch.Tensor]:
        """The parameters as a fit's `init=` takes them."""
        return {k: getattr(self, k) for k in PARAM_KEYS}


def smplx_vertex_ids(data: BodyModelData) -> dict[str, int]:
    """Extra-keypoint vertex ids that are right for this mesh (smplx's own are SMPL's)."""
    if all(k in data.vertex_ids for k in EXTRA_VERTEX_NAMES):
        return {k: int(data.vertex_ids[k]) for k in EXTRA_VERTEX_NAMES}
    if data.num_vertices == SMPL_NUM_VERTICES:
        return dict(SMPLX_VERTEX_IDS["smplh"])
    return guess_vertex_ids(data)


def to_smplx(data: BodyModelData, dtype: torch.dtype = torch.float32) -> smplx.SMPL:
    """An smplx.SMPL module built from the arrays (no pickle, no chumpy)."""
    struct = Struct(**data.to_arrays())
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for 10-beta models
        return smplx.SMPL(
            model_path="",
            data_struct=struct,
            num_betas=data.num_betas,
            vertex_ids=smplx_vertex_ids(data),
            create_betas=False,
            create_global_orient=False,
            create_body_pose=False,
            create_transl=False,
            dtype=dtype,
            gender=str(data.meta.get("gender", "neutral")),
        )


class BodyModel(torch.nn.Module):
    """Batched posing on CPU or CUDA; exposes the model's arrays as tensors."""

    def __init__(self, data: BodyModelData, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.data = data
        self.smpl = to_smplx(data, dtype)
        self.register_buffer("parts", torch.as_tensor(_parts_or_derive(data)))

    @classmethod
    def load(cls, model: str | Path | None = None, **kw) -> BodyModel:
        from loopreg.body.registry import load_model_data

        return cls(load_model_data(model), **kw)

    # arrays ---------------------------------------------------------------------------------
    @property
    def faces(self) -> torch.Tensor:
        return self.smpl.faces_tensor

    @property
    def v_template(self) -> torch.Tensor:
        return self.smpl.v_template

    @property
    def weights(self) -> torch.Tensor:
        return self.smpl.lbs_weights

    @property
    def shapedirs(self) -> torch.Tensor:
        return self.smpl.shapedirs

    @property
    def posedirs(self) -> torch.Tensor:
        """(P, V*3), smplx's layout."""
        return self.smpl.posedirs

    @property
    def J_regressor(self) -> torch.Tensor:
        return self.smpl.J_regressor

    @property
    def parents(self) -> torch.Tensor:
        return self.smpl.parents

    @property
    def num_betas(self) -> int:
        return self.data.num_betas

    @property
    def num_joints(self) -> int:
        return self.data.num_joints

    # posing ---------------------------------------------------------------------------------
    def forward(
        self,
        betas: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> BodyOutput:
        given = [t for t in (betas, global_orient, body_pose, transl) if t is not None]
        B = batch_size or (given[0].shape[0] if given else 1)
        ref = self.v_template

        def zeros(n: int) -> torch.Tensor:
            return torch.zeros(B, n, dtype=ref.dtype, device=ref.device)

        out = self.smpl(
            betas=zeros(self.num_betas) if betas is None else betas,
            global_orient=zeros(3) if global_orient is None else global_orient,
            body_pose=zeros(3 * (self.num_joints - 1)) if body_pose is None else body_pose,
            transl=zeros(3) if transl is None else transl,
            return_verts=True,
        )
        J = self.num_joints
        return BodyOutput(vertices=out.vertices, joints=out.joints[:, :J], keypoints=out.joints[:, J:])

    def rest(self, betas: torch.Tensor | None = None) -> BodyOutput:
        """Rest-pose (zero pose) body for the given shape."""
        return self.forward(betas=betas)


def _parts_or_derive(data: BodyModelData) -> np.ndarray:
    if data.parts is not None:
        return data.parts.astype(np.int64)
    from loopreg.body.parts import vertex_parts

    return vertex_parts(data.weights)
