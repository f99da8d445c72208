"""PSNR: how close two videos (or frames) are, in dB — the one formula the kit reports fidelity with.

PSNR = 10·log10(peak² / MSE), peak 255 for uint8 frames. Identical inputs would give infinity; they give
``PSNR_CAP`` (100 dB, far above any lossy reconstruction: 8-bit rounding alone costs at most ~59 dB).
"""

from __future__ import annotations

import numpy as np

PSNR_CAP = 100.0  # dB reported for identical images (instead of infinity)


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB of a mean squared error on a scale whose maximum is ``peak``, at most ``PSNR_CAP``."""
    if mse <= 0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10 * np.log10(peak**2 / mse)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of the same shape; identical arrays give ``PSNR_CAP``."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs arrays of the same shape, got {a.shape} and {b.shape}")
    return psnr_from_mse(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))
