"""Independent reference solutions, shared checks and shared inputs used by the tests."""

import numpy as np
import torch
from sklearn.metrics import mean_squared_error


def dense_kkt(A: np.ndarray, b: np.ndarray, c: np.ndarray, gamma: float) -> np.ndarray:
    """Solve min 1/2 gamma |z|^2 + c.z s.t. A z = b from the full KKT matrix (float64).

    ``c: (B, n)`` -> ``z: (B, n)``.
    """
    A = np.asarray(A, dtype=np.float64)
    m, n = A.shape
    kkt = np.block([[gamma * np.eye(n), A.T], [A, np.zeros((m, m))]])
    rhs = np.concatenate([-np.atleast_2d(c).T, np.repeat(b[:, None], np.atleast_2d(c).shape[0], 1)])
    return np.linalg.solve(kkt, rhs)[:n].T


def overfit_one_batch(
    model: torch.nn.Module, images: torch.Tensor, steps: int, lr: float = 3e-3
) -> tuple[float, float, float]:
    """Train ``model`` (forward -> dict, ``loss(images, out)``) on one batch with Adam.

    Returns the initial and final losses and the oracle baseline: the MSE of the best
    image-independent output, the per-pixel batch mean.
    """
    mean_baseline = mean_squared_error(
        images.numpy().ravel(), images.mean(0, keepdim=True).expand_as(images).numpy().ravel()
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        initial = model.loss(images, model(images)).item()
    for _ in range(steps):
        loss = model.loss(images, model(images))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = model.loss(images, model(images)).item()
    return initial, final, mean_baseline


def two_scenes() -> torch.Tensor:
    """Two 32x32 images: blue-ish background, one coloured rectangle each."""
    images = torch.zeros(2, 3, 32, 32)
    images[:, 2] = 0.2
    images[0, 0, 4:14, 6:16] = 0.9
    images[1, 1, 16:28, 12:26] = 0.8
    return images
