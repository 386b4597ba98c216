"""The MNIST model: two convolutions and two fully connected layers, as in pytorch/examples ``mnist``.

Unlike the example, each convolution is followed by max-pooling, so the second convolution runs on 13x13
maps instead of 26x26: about a fifth of the compute and 0.23 M parameters instead of 1.2 M, the same
accuracy on MNIST, and a CPU fallback that trains in seconds per epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MnistCNN(nn.Module):
    """Digits ``[N, 1, 28, 28]`` scaled to [0, 1] -> logits ``[N, 10]``."""

    def __init__(self, num_classes: int = 10, mean: float = 0.1307, std: float = 0.3081):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 26 -> 13
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 11 -> 5
        x = self.dropout1(torch.flatten(x, 1))
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)
