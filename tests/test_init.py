import numpy as np
from scipy.spatial.transform import Rotation

from loopreg.fit.init import robust_procrustes, weighted_procrustes


def test_procrustes_recovers_similarity_despite_outliers():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(2000, 3)) * [0.3, 0.8, 0.15]
    R = Rotation.from_rotvec([0.3, 2.5, -0.4]).as_matrix()
    dst = 1.2 * src @ R.T + [0.1, -0.5, 2.0]
    bad = rng.random(2000) < 0.3  # 30 % wrong correspondences
    dst[bad] = rng.normal(size=(bad.sum(), 3))
    w = np.ones(2000)
    R0, _, _ = weighted_procrustes(src, dst, w)
    R1, t1, s1 = robust_procrustes(src, dst, w)
    angle = lambda A: np.degrees(np.arccos(np.clip((np.trace(A.T @ R) - 1) / 2, -1, 1)))  # noqa: E731
    assert angle(R1) < 1.0 and abs(s1 - 1.2) < 0.02 and np.allclose(t1, [0.1, -0.5, 2.0], atol=0.02)
    assert angle(R1) < angle(R0)  # the robust fit beats the plain one
