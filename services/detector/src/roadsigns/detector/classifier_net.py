"""The 43-class sign classifier: a small CNN on 32x32 crops, or several averaged.

Kept beside the detector because the worker runs it on every crop; the training
package imports the same definition so that a trained state dict always fits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from roadsigns.detector.preprocess import INPUT_SIZE, NUM_CLASSES, standardise

__all__ = ["INPUT_SIZE", "NUM_CLASSES", "SignEnsemble", "SignNet", "conv_block", "load_classifier", "standardise"]


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
    """Three conv blocks (`width` channels, then twice and four times that), global average pool, one linear layer."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(conv_block(3, w), conv_block(w, 2 * w), conv_block(2 * w, 4 * w))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SignEnsemble(nn.Module):
    """SignNets trained from different seeds (`classifier.seeds`), their class probabilities averaged.

    Members trained alike still differ by seed (two seeds of an earlier recipe made 25 and
    34 errors on the held-out tracks); averaging evens that out. The output is the log of the
    averaged probabilities: a softmax over it gives them back, so callers treat it as one
    network's logits. The shipped classifier has one member.
    """

    def __init__(self, members: int, width: int = 32) -> None:
        super().__init__()
        self.members = nn.ModuleList(SignNet(width=width) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([member(x).softmax(dim=1) for member in self.members]).mean(dim=0)
        return probs.clamp_min(1e-12).log()


def load_classifier(path: Path) -> nn.Module:
    """A saved state dict as the network it was saved from: a SignEnsemble, or one SignNet."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    member_ids = {int(k.split(".")[1]) for k in state if k.startswith("members.")}
    first_conv = next(v for k, v in state.items() if k.endswith("features.0.0.weight"))
    width = int(first_conv.shape[0])  # the saved network's own width
    model = SignEnsemble(len(member_ids), width) if member_ids else SignNet(width=width)
    model.load_state_dict(state)
    return model.eval()
