"""PSNR and SSIM on 8-bit Y after shaving `scale` border pixels (the standard SR protocol)."""
from __future__ import annotations

import numpy as np

from .data import shave, to_8bit


def psnr(sr_y: np.ndarray, hr_y: np.ndarray, border: int) -> float:
    """PSNR in dB of two Y/255 planes, both rounded to 8-bit codes, peak 255."""
    a, b = shave(to_8bit(sr_y), border), shave(to_8bit(hr_y), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(sr_y: np.ndarray, hr_y: np.ndarray, border: int) -> float:
    """SSIM of Wang et al. 2004 (Gaussian 11x11, sigma 1.5, K = 0.01/0.03) on 8-bit Y, as MATLAB's."""
    from skimage.metrics import structural_similarity

    a, b = shave(to_8bit(sr_y), border), shave(to_8bit(hr_y), border)
    return float(structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))
