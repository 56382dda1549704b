"""The 43-class sign classifier: a small CNN on 32x32 crops.

Kept beside the detector because the worker runs it on every crop; the training
package imports the same definition so that a trained state dict always fits.
"""

from __future__ import annotations

import torch
from torch import nn

from roadsigns.detector.preprocess import INPUT_SIZE, NUM_CLASSES, standardise

__all__ = ["INPUT_SIZE", "NUM_CLASSES", "SignNet", "conv_block", "standardise"]


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU, then a 2x2 max pool."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SignNet(nn.Module):
    """Three conv blocks (32, 64, 128 channels), global average pool, one linear layer."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_block(3, 32), conv_block(32, 64), conv_block(64, 128))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
