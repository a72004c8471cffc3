"""Training-time augmentation of digit batches: vectorised on tensors, seeded, on the device.

One call transforms a whole batch (B, H, W) in [0, 1]: a random affine map (rotation, scale,
shear, shift) plus an elastic displacement field, sampled in one ``grid_sample``; then, each
with its own chance per digit, stroke thickening or thinning, blur, contrast loss and noise.
The kinds of trouble the reading path removes itself (paper colour, uneven light, JPEG, size
and position in the frame) are deliberately absent, so the user-style set tests something
the model never saw in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AUGMENTS", "AugmentConfig", "augment", "view"]


@dataclass(frozen=True)
class AugmentConfig:
    rotate: float = 0.0  # degrees, either way
    scale: float = 0.0  # +- relative size
    shear: float = 0.0  # +- shear factor
    shift: float = 0.0  # +- fraction of the side
    elastic: float = 0.0  # displacement of the elastic field, pixels (0: off)
    thicken: float = 0.0  # chance of a thicker stroke (3x3 dilation)
    thin: float = 0.0  # chance of a thinner stroke (3x3 erosion, when the digit survives it)
    blur: float = 0.0  # chance of a Gaussian blur
    contrast: float = 0.0  # chance of faded ink (peak 0.4-1, gamma 0.7-1.4)
    noise: float = 0.0  # std of additive noise at its strongest (scaled per digit)
    gap: float = 0.0  # chance of a pen skip: a thin band erased across the digit, any angle


AUGMENTS = {
    "none": None,
    # The best preset's since 2026-11-24: small rotations, size changes and shifts, milder
    # than "affine". Seeds 0-2: 22, 15 and 17 held-out errors of 6,000, against 27, 15 and
    # 20 with "affine" (test accuracy the same: 99.67% mean).
    "mild": AugmentConfig(rotate=8, scale=0.08, shift=0.08),
    # What record MNIST models use, and the best preset's from 2026-11-22 to 24 (kept so that
    # its runs resume as they started). With shear and elasticity on top ("standard"), its
    # seeds 0-2 reached 99.33, 99.58 and 99.65% on their held-out digits; with this, 99.60,
    # 99.73 and 99.63%.
    "affine": AugmentConfig(rotate=10, scale=0.1, shift=0.1),
    # The best preset's augmentation until 2026-11-22, kept so that its runs resume as they
    # started.
    "standard": AugmentConfig(rotate=10, scale=0.1, shear=0.1, shift=0.08, elastic=1.0),
    # For reading people's digits: slant, stroke width, blur, faded ink and noise too.
    "robust": AugmentConfig(rotate=15, scale=0.12, shear=0.2, shift=0.06, elastic=1.5,
                            thicken=0.25, thin=0.15, blur=0.25, contrast=0.3, noise=0.08,
                            gap=0.2),
}

_ELASTIC_GRID = 4  # the displacement field is random on a 4x4 grid, smoothly upsampled


def _uniform(n: int, spread: float, g: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=g) * 2 - 1).mul_(spread).to(device)


def _chance(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=g) < p).to(device)


def _warp(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    b, h, w = x.shape
    dev = x.device
    angle = _uniform(b, math.radians(cfg.rotate), g, dev)
    scale = 1 + _uniform(b, cfg.scale, g, dev)
    shear = _uniform(b, cfg.shear, g, dev)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([  # (B, 2, 3): output -> input coordinates, in [-1, 1] units
        torch.stack([cos, -sin + shear * cos, _uniform(b, 2 * cfg.shift, g, dev)], 1),
        torch.stack([sin, cos + shear * sin, _uniform(b, 2 * cfg.shift, g, dev)], 1)], 1)
    grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)  # (B, H, W, 2)
    if cfg.elastic:
        field = torch.randn(b, 2, _ELASTIC_GRID, _ELASTIC_GRID, generator=g).to(dev)
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1) * (2 * cfg.elastic / h)
    return _sample(x, grid)


def _sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``x`` (B, H, W) read at ``grid`` (B, H, W, 2), bilinear, blank outside."""
    return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]


def _pick(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(mask[:, None, None], new, old)


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """A randomly transformed copy of the batch ``x`` (B, H, W) float in [0, 1]; the random
    numbers come from ``g`` (a CPU generator), so a seed fixes the whole stream."""
    b = x.shape[0]
    dev = x.device
    x = _warp(x, cfg, g)
    if cfg.thicken:
        x = _pick(_chance(b, cfg.thicken, g, dev), F.max_pool2d(x[:, None], 3, 1, 1)[:, 0], x)
    if cfg.thin:
        thinner = -F.max_pool2d(-x[:, None], 3, 1, 1)[:, 0]
        survives = thinner.flatten(1).sum(1) > 0.35 * x.flatten(1).sum(1)
        x = _pick(_chance(b, cfg.thin, g, dev) & survives, thinner, x)
    if cfg.blur:
        k = torch.tensor([0.25, 0.5, 0.25], device=dev)
        kernel = (k[:, None] * k[None, :])[None, None]
        x = _pick(_chance(b, cfg.blur, g, dev), F.conv2d(x[:, None], kernel, padding=1)[:, 0], x)
    if cfg.contrast:
        peak = (0.4 + 0.6 * torch.rand(b, generator=g)).to(dev)[:, None, None]
        gamma = (0.7 + 0.7 * torch.rand(b, generator=g)).to(dev)[:, None, None]
        x = _pick(_chance(b, cfg.contrast, g, dev), peak * x.clamp(0, 1) ** gamma, x)
    if cfg.gap:
        h, w = x.shape[1:]
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=dev),
                                torch.linspace(-1, 1, w, device=dev), indexing="ij")
        angle = (torch.rand(b, generator=g) * math.pi).to(dev)[:, None, None]
        offset = _uniform(b, 0.4, g, dev)[:, None, None]
        width = (0.05 + 0.05 * torch.rand(b, generator=g)).to(dev)[:, None, None]
        band = (xx * torch.cos(angle) + yy * torch.sin(angle) - offset).abs() < width
        x = _pick(_chance(b, cfg.gap, g, dev), x * ~band, x)
    if cfg.noise:
        strength = (torch.rand(b, generator=g) * cfg.noise).to(dev)[:, None, None]
        x = x + strength * torch.randn(x.shape, generator=g).to(dev)
    return x.clamp_(0, 1)


def view(x: torch.Tensor, turn: float = 0.0, size: float = 1.0) -> torch.Tensor:
    """The batch ``x`` (B, H, W) turned by ``turn`` degrees and drawn ``size`` times as large,
    about the centre (bilinear, blank outside): one fixed view, for test-time augmentation."""
    b, h, w = x.shape
    angle = math.radians(turn)
    cos, sin = math.cos(angle) / size, math.sin(angle) / size
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    return _sample(x, F.affine_grid(theta.expand(b, 2, 3), (b, 1, h, w), align_corners=False))
