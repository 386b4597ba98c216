"""The CIFAR-10 model: three conv blocks (conv, BatchNorm, ReLU, max-pool, dropout) and a small classifier.

Sized for a CPU fallback: one 3x3 convolution per block (32, 64, 128 channels), about 0.36 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

MEAN = (0.4914, 0.4822, 0.4465)  # the real CIFAR-10 training set's channel statistics
STD = (0.2470, 0.2435, 0.2616)


def _block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
    )


class Cifar10CNN(nn.Module):
    """RGB images ``[N, 3, 32, 32]`` scaled to [0, 1] -> logits ``[N, 10]``."""

    def __init__(self, num_classes: int = 10, width: int = 32, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.features = nn.Sequential(
            _block(3, width, dropout),  # 32 -> 16
            _block(width, 2 * width, dropout),  # 16 -> 8
            _block(2 * width, 4 * width, dropout),  # 8 -> 4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * width * 4 * 4, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features((x - self.mean) / self.std))
