"""A FastViT-style hybrid (convolution stages, then attention blocks) trained here on structured
synthetic images, so that its outputs depend on its input (an untrained network's are near-constant
and every int8 recipe agrees with them). Fixed seed and step count: the same weights on every run."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CLASSES, SIZE = 10, 32


class ConvMixer(nn.Module):
    """FastViT's RepMixer stage, unfolded: depthwise 3x3 token mixing, then a 1x1 channel MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2d(dim))
        self.mlp = nn.Sequential(nn.Conv2d(dim, dim * 3, 1), nn.GELU(), nn.Conv2d(dim * 3, dim, 1))

    def forward(self, x):
        x = x + self.mix(x)
        return x + self.mlp(x)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention and MLP over the feature map's positions."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.heads, self.norm1, self.norm2 = heads, nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):  # [B, N, C]
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        x = x + self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class Hybrid(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim), nn.GELU())
        self.convs = nn.Sequential(ConvMixer(dim), ConvMixer(dim))
        self.down = nn.Conv2d(dim, dim * 2, 3, stride=2, padding=1)
        self.attention = nn.Sequential(Attention(dim * 2), Attention(dim * 2))
        self.head = nn.Sequential(nn.LayerNorm(dim * 2), nn.Linear(dim * 2, CLASSES))

    def forward(self, image):
        x = self.down(self.convs(self.stem(image)))  # [B, 2C, 8, 8]
        x = self.attention(x.flatten(2).transpose(1, 2))
        return self.head(x.mean(1))


def images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Oriented gratings: the class sets orientation and frequency, colour and phase are random, with
    noise. Returns images [n, 3, 32, 32] (about zero mean, unit scale) and their labels."""
    labels = rng.integers(0, CLASSES, n)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    angle = labels * np.pi / CLASSES
    frequency = 2 + (labels % 3) * 2
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(2 * np.pi * frequency[:, None, None] * (np.cos(angle)[:, None, None] * xx
                                                          + np.sin(angle)[:, None, None] * yy) + phase[:, None, None])
    colour = rng.uniform(0.02, 0.3, (n, 3, 1, 1))
    x = colour * wave[:, None] + 1.0 * rng.normal(size=(n, 3, SIZE, SIZE))
    return x.astype(np.float32), labels


def trained(steps: int = 300, seed: int = 0) -> tuple[Hybrid, float]:
    """The hybrid after `steps` Adam steps of 64 images; returns it (eval mode) and its accuracy on
    512 held-out images."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Hybrid()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        x, y = images(rng, 64)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = images(np.random.default_rng(seed + 1), 512)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    return model, accuracy
