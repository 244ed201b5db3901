"""Independent reference solutions used by the tests."""

import numpy as np


def dense_kkt(A: np.ndarray, b: np.ndarray, c: np.ndarray, gamma: float) -> np.ndarray:
    """Solve min 1/2 gamma |z|^2 + c.z s.t. A z = b from the full KKT matrix (float64).

    ``c: (B, n)`` -> ``z: (B, n)``.
    """
    A = np.asarray(A, dtype=np.float64)
    m, n = A.shape
    kkt = np.block([[gamma * np.eye(n), A.T], [A, np.zeros((m, m))]])
    rhs = np.concatenate([-np.atleast_2d(c).T, np.repeat(b[:, None], np.atleast_2d(c).shape[0], 1)])
    return np.linalg.solve(kkt, rhs)[:n].T
