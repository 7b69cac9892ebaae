"""CutMix (Yun et al. 2019) and MixUp (Zhang et al. 2018) with exact soft labels: numpy reference.

Sampling is split in two streams of the record's generator family: the engine decides *whether*
a copy is mixed and *with whom* (stream "mix", from the seeded record order), the worker samples
lambda and the box (stream "mix-params"). CutMix maths (the paper's):

    lambda0 ~ Beta(alpha, alpha);  r = sqrt(1 - lambda0)
    box height = int(H * r), width = int(W * r), centred on (cy, cx) ~ U{0..H-1} x U{0..W-1},
    clipped to the image;  lambda = 1 - (box area) / (H * W)   (the true base-pixel fraction)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def mixed_label(label: int, num_classes: int, smoothing: float = 0.0,
                mixing: Sequence[tuple[int, float]] = ()) -> np.ndarray:
    """onehot(label), then y <- lam·y + (1−lam)·onehot(partner) for each (partner, lam) in order
    (chained mixing composes exactly), then label smoothing; float32 summing to 1."""
    y = np.zeros(num_classes, dtype=np.float64)
    y[label] = 1.0
    for partner_label, lam in mixing:
        y *= lam
        y[partner_label] += 1.0 - lam
    if smoothing:
        y = y * (1.0 - smoothing) + smoothing / num_classes
    return y.astype(np.float32)


def soft_label(label: int, num_classes: int, smoothing: float = 0.0,
               partner_label: int | None = None, lam: float = 1.0) -> np.ndarray:
    """lam·onehot(label) + (1−lam)·onehot(partner), then label smoothing (one mix entry)."""
    mixing = [(partner_label, lam)] if partner_label is not None and lam < 1.0 else []
    return mixed_label(label, num_classes, smoothing, mixing)


def wants_mix(rng: np.random.Generator, p: float) -> bool:
    """First draw of the "mix" stream: is this augmented copy mixed?"""
    return bool(rng.random() < p)


def pick_partner(rng: np.random.Generator, n_candidates: int) -> int:
    """Second draw of the "mix" stream: index among the candidate partners."""
    return int(rng.integers(0, n_candidates))


def sample_cutmix(rng: np.random.Generator, alpha: float, height: int, width: int) -> dict[str, Any]:
    lam0 = float(rng.beta(alpha, alpha))
    ratio = np.sqrt(1.0 - lam0)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, x0 = cy - cut_h // 2, cx - cut_w // 2
    y0c, x0c = min(max(y0, 0), height), min(max(x0, 0), width)
    y1c, x1c = min(max(y0 + cut_h, 0), height), min(max(x0 + cut_w, 0), width)
    area = (y1c - y0c) * (x1c - x0c)
    lam = 1.0 - area / float(height * width)
    return {"method": "cutmix", "lambda": lam, "lambda_sampled": lam0, "box": [y0c, x0c, y1c, x1c]}


def sample_mixup(rng: np.random.Generator, alpha: float) -> dict[str, Any]:
    """lambda ~ Beta(alpha, alpha); one that float32 (the kernel's and the soft label's precision)
    holds as 1 mixes nothing, so it is recorded as 1 and does not count as mixed, as an empty CutMix
    box does (small alphas draw such lambdas often: ~1.6% of draws at alpha 0.2)."""
    lam = float(rng.beta(alpha, alpha))
    if lam < 1.0 and np.float32(lam) == 1.0:
        return {"method": "mixup", "lambda": 1.0, "lambda_sampled": lam}
    return {"method": "mixup", "lambda": lam}


def sample_mix(rng: np.random.Generator, method: str, alpha: float, height: int, width: int) -> dict[str, Any]:
    if method == "cutmix":
        return sample_cutmix(rng, alpha, height, width)
    return sample_mixup(rng, alpha)


def match_size(partner: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Partners of another size are resized (bilinear) to the base image's size first."""
    if partner.shape[:2] == tuple(shape[:2]):
        return partner
    import cv2

    out = cv2.resize(partner, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return out[:, :, None] if out.ndim == 2 else out


def cutmix(base: np.ndarray, partner: np.ndarray, box: list[int]) -> np.ndarray:
    """Pure kernel: base with partner's pixels inside box [y0, x0, y1, x1)."""
    y0, x0, y1, x1 = box
    out = base.copy()
    out[y0:y1, x0:x1] = partner[y0:y1, x0:x1]
    return out


def mixup(base: np.ndarray, partner: np.ndarray, lam: float) -> np.ndarray:
    """Pure kernel: round(lam·base + (1−lam)·partner) in float32."""
    blend = np.float32(lam) * base.astype(np.float32) + np.float32(1.0 - lam) * partner.astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def apply_mix(base: np.ndarray, partner: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    partner = match_size(partner, base.shape)
    if params["method"] == "cutmix":
        return cutmix(base, partner, params["box"])
    return mixup(base, partner, params["lambda"])
