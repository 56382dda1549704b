"""The classifier's sign gate: is a proposal a road sign at all?

The localiser proposes more than signs: a car's wheel and tail lights, traffic lights,
foliage, lettering on a lorry, a patterned wall. The classifier knows only signs, so it names
some of those with confidence ("priority road" on a sunlit leaf), and where it is unsure the
service reports an "other sign". Those reports were most of the held-out photos' false ones.

The gate is trained on exactly that mistake: every proposal the localiser makes in GTSDB's
training photos (score >= `min_score`), labelled a sign where it covers a box of GTSDB's or
of the other signs' list (IoU >= 0.5), not one where it touches none (IoU < 0.2), and left
out in between (part of a sign, a loose box). Its input is what the trained classifier
already computes for the crop (`classifier_net.gate_inputs`), its model a logistic
regression: 2,000 proposals are too few to train features of its own, and the
classifier's features, learnt from 40,000 sign crops, already tell a sign's face from a
wheel's. It is written into the classifier (`SignEnsemble.gate`) and exported with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from roadsigns.cli.metrics import iou
from roadsigns.detector.classifier_net import SignEnsemble, gate_inputs, load_classifier
from roadsigns.detector.model import SignDetector, square_crop
from roadsigns.detector.preprocess import INPUT_SIZE, standardise
from roadsigns.training.gtsdb import Box

SIGN_IOU = 0.5  # a proposal this much on a listed sign is a sign
NOT_SIGN_IOU = 0.2  # one under this on every listed sign is not


def proposals(
    detector: SignDetector, images: Path, names: list[str], boxes: dict[str, list[Box]], min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """The localiser's proposals in the photos, and the listed signs' own boxes, as the classifier's
    input crops (N x 32 x 32 x 3 RGB, cut as the service cuts them) and their labels (1 a sign, 0
    not; the loose proposals left out). The listed boxes make sure every sign is shown at least
    once, whether or not the localiser proposed it."""
    crops, labels = [], []
    for name in names:
        image = cv2.imread(str(images / name))
        found, scores = detector.localise(image)
        truth = [b.xyxy for b in boxes.get(name, [])]
        candidates = [(t, 1) for t in truth]
        for box, score in zip(found, scores, strict=True):
            overlap = max((iou(tuple(box), t) for t in truth), default=0.0)
            if score >= min_score and not NOT_SIGN_IOU <= overlap < SIGN_IOU:
                candidates.append((tuple(float(v) for v in box), int(overlap >= SIGN_IOU)))
        for box, label in candidates:
            crop = square_crop(image, box, detector.crop_scale)
            crop = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
            crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            labels.append(label)
    if not crops:
        return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8), np.zeros(0, np.int64)
    return np.stack(crops), np.array(labels, np.int64)


def features(model: SignEnsemble, crops: np.ndarray) -> torch.Tensor:
    """The gate's inputs for RGB crops: what the classifier computes for them anyway."""
    with torch.no_grad():
        x = torch.from_numpy(standardise(crops))
        nets = model.nets()
        feats = [net.features(x) for net in nets]
        probs = torch.stack([net.head(f).softmax(dim=1) for net, f in zip(nets, feats, strict=True)]).mean(0)
        return gate_inputs(feats, probs.clamp_min(1e-12).log())


def fit(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.nn.Linear:
    """An L2-regularised logistic regression, both classes weighted equally (there are more
    non-signs than signs), on standardised inputs; returned as one linear layer on the raw
    inputs (the standardisation folded into its weights). `c` is the inverse regularisation
    strength, as scikit-learn's C: the loss is c x the summed log loss + |w|^2 / 2."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    positives = float(y.sum())
    weight = torch.where(y > 0, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-7, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        logits = z @ w + b
        value = c * (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        value = value + 0.5 * (w * w).sum()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    optimiser.step(loss)  # type: ignore[no-untyped-call]
    layer = torch.nn.Linear(x.shape[1], 1)
    with torch.no_grad():
        layer.weight.copy_((w / std).unsqueeze(0))
        layer.bias.copy_(b - (w * mean / std).sum())
    return layer


def train(
    classifier_weights: Path,
    detector: SignDetector,
    images: Path,
    names: list[str],
    boxes: dict[str, list[Box]],
    cfg: dict[str, Any],
) -> tuple[SignEnsemble, dict[str, float]]:
    """The classifier with a sign gate fitted on the localiser's proposals in `names`; and the
    gate's figures on them (how many signs it keeps and non-signs it drops at the service's
    default threshold, `min_sign_probability`)."""
    model = load_classifier(classifier_weights)
    if not isinstance(model, SignEnsemble):
        raise ValueError(f"{classifier_weights}: the sign gate needs the ensemble form the classifier stage writes")
    crops, labels = proposals(detector, images, names, boxes, float(cfg["min_score"]))
    if labels.min(initial=1) == labels.max(initial=0):
        raise ValueError("the sign gate needs proposals on signs and off them; the photos gave one kind only")
    x, y = features(model, crops), torch.from_numpy(labels).float()
    width = next(v for k, v in model.state_dict().items() if k.endswith("features.0.0.weight")).shape[0]
    gated = SignEnsemble(len(model.members), int(width), gated=True)
    gated.load_state_dict(model.state_dict(), strict=False)
    gated.gate = fit(x, y, float(cfg["c"]))
    gated.eval()
    with torch.no_grad():
        assert gated.gate is not None
        p = torch.sigmoid(gated.gate(x)).squeeze(1)
    keep = p >= float(cfg["min_sign_probability"])
    signs, others = y > 0, y == 0
    return gated, {
        "proposals_signs": float(signs.sum()),
        "proposals_not_signs": float(others.sum()),
        "train_signs_kept": float((keep & signs).sum() / signs.sum()),
        "train_not_signs_dropped": float((~keep & others).sum() / others.sum()),
    }
