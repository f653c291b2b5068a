"""Body model: data format, posing, default model build, SMPL import, parts, diffused field."""

from loopreg.body.data import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModelData
from loopreg.body.model import BodyModel, BodyOutput

__all__ = ["BodyModel", "BodyModelData", "BodyOutput", "SMPL_JOINT_NAMES", "SMPL_PARENTS"]
