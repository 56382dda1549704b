"""The 43-class sign classifier: a small CNN on 32x32 crops, or several averaged, and its sign gate.

Kept beside the detector because the worker runs it on every crop; the training
package imports the same definition so that a trained state dict always fits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from roadsigns.detector.preprocess import INPUT_SIZE, NUM_CLASSES, standardise

__all__ = [
    "INPUT_SIZE",
    "NUM_CLASSES",
    "SignEnsemble",
    "SignNet",
    "conv_block",
    "gate_inputs",
    "load_classifier",
    "standardise",
]


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
    network's logits. The shipped classifier has one member. With a sign gate (`gated`), one
    column follows the 43: the gate's logit, the crop is a sign at all (`gate_inputs`).
    """

    def __init__(self, members: int, width: int = 32, gated: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(SignNet(width=width) for _ in range(members))
        # The sign gate, fitted after the members (training/sign_gate.py).
        self.gate = nn.Linear(4 * width + NUM_CLASSES, 1) if gated else None

    def nets(self) -> list[SignNet]:
        return [m for m in self.members if isinstance(m, SignNet)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nets = self.nets()
        features = [net.features(x) for net in nets]
        probs = torch.stack([net.head(f).softmax(dim=1) for net, f in zip(nets, features, strict=True)]).mean(0)
        log_probs = probs.clamp_min(1e-12).log()
        if self.gate is None:
            return log_probs
        return torch.cat([log_probs, self.gate(gate_inputs(features, log_probs))], dim=1)


def gate_inputs(features: list[torch.Tensor], log_probs: torch.Tensor) -> torch.Tensor:
    """What the sign gate reads: the members' pooled last-block features (averaged) beside the
    ensemble's log class probabilities.

    The gate says whether a crop is a road sign at all. The localiser also proposes wheels,
    tail and traffic lights, foliage, lettering on lorries and patterned walls; the classifier,
    trained on signs only, names some of them with confidence. Its features already tell a
    sign's face from those (a logistic regression on them, trained on the localiser's proposals
    in GTSDB's training photos, keeps 98 % of its signs while rejecting half of its other
    proposals), so the gate is one linear layer on them, run in the classifier's graph: one
    more output column, no second model to load, version or swap.
    """
    pooled = torch.stack([f.mean(dim=(2, 3)) for f in features]).mean(0)
    return torch.cat([pooled, log_probs], dim=1)


def load_classifier(path: Path) -> nn.Module:
    """A saved state dict as the network it was saved from: a SignEnsemble (with its sign gate, if
    it has one), or one SignNet."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    member_ids = {int(k.split(".")[1]) for k in state if k.startswith("members.")}
    first_conv = next(v for k, v in state.items() if k.endswith("features.0.0.weight"))
    width = int(first_conv.shape[0])  # the saved network's own width
    model = SignEnsemble(len(member_ids), width, gated="gate.weight" in state) if member_ids else SignNet(width=width)
    model.load_state_dict(state)
    return model.eval()
