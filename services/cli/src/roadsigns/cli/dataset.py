"""`roadsigns dataset export`: a tenant's reviewed photos, in the formats training reads.

Reads Postgres and the blob store named by the usual settings (`ROADSIGNS_DATABASE_URL`,
`ROADSIGNS_BLOB_DIR`), as the tracker does. A photo is exported once a person reviewed at
least one of its signs and none of its queued signs waits for a decision; its boxes are then
what the reviews say (accepted, corrected, missed; "not a sign" removed) plus the signs that
were never queued, as the model found them. OUT receives:

- `images/<job id>.<ext>`: the photos, as stored;
- `gt.txt`: GTSDB ground truth (`name;left;top;right;bottom;class_id`, pixels inclusive) for
  the signs of the 43 classes: what `roadsigns evaluate detection` and training read;
- `others.txt`: the same for signs outside the 43 (`...;class name` in the last field);
- `crops.npz`: `images` (N x 32 x 32 x 3 uint8 RGB, cut GTSRB-style with a 10 % margin),
  `labels` (uint8) and `track` (int32, one per reviewed sign) of the reviewed signs of the 43
  classes, like `../shared/data/gtsrb-train.npz`;
- `signs.jsonl`: every exported box, with its text and who decided it;
- `manifest.json`: counts and `version`, the SHA-256 of everything above but itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from sqlalchemy.orm import Session

from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.db import reviews as queue
from roadsigns.shared.db.models import Job, Review
from roadsigns.shared.reviews import reasons

if TYPE_CHECKING:
    from mlflow.data.meta_dataset import MetaDataset

FORMAT = "roadsigns-reviews/1"
CROP_SIDE = 32
CROP_MARGIN = 0.1  # GTSRB crops hold the sign with about a tenth of its size around it


@dataclass
class Export:
    gt: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    signs: list[dict[str, Any]] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    tracks: list[int] = field(default_factory=list)
    photos: dict[str, bytes] = field(default_factory=dict)
    skipped_pending: int = 0
    skipped_missing: int = 0
    reviews: int = 0


def _inclusive(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel edges [x1, y1, x2, y2) as GTSDB's inclusive left, top, right, bottom, inside the photo."""
    x1, y1, x2, y2 = box
    left, top = min(max(0, round(x1)), width - 1), min(max(0, round(y1)), height - 1)
    right, bottom = min(max(left, round(x2) - 1), width - 1), min(max(top, round(y2) - 1), height - 1)
    return left, top, right, bottom


def crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A GTSRB-like crop: the inclusive box grown by CROP_MARGIN on each side, resized to 32 x 32."""
    left, top, right, bottom = box
    pad_x, pad_y = round((right + 1 - left) * CROP_MARGIN), round((bottom + 1 - top) * CROP_MARGIN)
    h, w = rgb.shape[:2]
    cut = rgb[max(0, top - pad_y) : min(h, bottom + 1 + pad_y), max(0, left - pad_x) : min(w, right + 1 + pad_x)]
    return cv2.resize(cut, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)


Labelled = tuple[tuple[float, ...], dict[str, Any], "Review | None"]


def _boxes(job: Job, reviews: list[Review], below: float) -> list[Labelled]:
    """The photo's signs as the reviews leave them: (box, label, the review that says so, if any)."""
    by_sign = {r.sign_id: r for r in reviews if r.sign_id is not None}
    out: list[Labelled] = []
    for s in job.signs:
        review = by_sign.get(s.id)
        if review is None:
            if reasons(s.confidence, s.text_matches_class, s.class_id, s.class_source, below):
                raise AssertionError(f"job {job.id} sign {s.index} is queued without a decision")
            label = {"class_id": s.class_id, "class_name": s.class_name, "text": s.text}
            out.append(((s.x1, s.y1, s.x2, s.y2), label, None))
        elif review.decision != "not_a_sign":
            label = {"class_id": review.class_id, "class_name": review.class_name, "text": review.text or ""}
            out.append(((review.x1, review.y1, review.x2, review.y2), label, review))  # type: ignore[arg-type]
    for review in reviews:
        if review.decision == "missed":
            label = {"class_id": review.class_id, "class_name": review.class_name, "text": review.text or ""}
            out.append(((review.x1, review.y1, review.x2, review.y2), label, review))  # type: ignore[arg-type]
    return out


def collect(session: Session, blobs: BlobStore, tenant: str, below: float) -> Export:
    """Everything to write, read in one transaction."""
    found = Export()
    jobs = queue.reviewed_jobs(session, tenant)
    waiting = queue.pending_jobs(session, tenant, below)
    reviews_by_job: dict[str, list[Review]] = defaultdict(list)
    for decided in queue.reviews_of(session, tenant, [j.id for j in jobs]):
        reviews_by_job[decided.job_id].append(decided)
    for job in jobs:
        if job.id in waiting:
            found.skipped_pending += 1
            continue
        try:
            data = blobs.get(job.blob_key)
        except BlobNotFound:  # retention took the photo
            found.skipped_missing += 1
            continue
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            found.skipped_missing += 1
            continue
        height, width = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        name = f"{job.id}{Path(job.blob_key).suffix or '.jpg'}"
        found.photos[name] = data
        found.reviews += len(reviews_by_job[job.id])
        for box, label, review in _boxes(job, reviews_by_job[job.id], below):
            left, top, right, bottom = _inclusive(box, width, height)  # type: ignore[arg-type]
            if label["class_id"] is not None:
                found.gt.append(f"{name};{left};{top};{right};{bottom};{label['class_id']}")
            else:
                found.others.append(f"{name};{left};{top};{right};{bottom};{label['class_name']}")
            found.signs.append(
                {
                    "photo": name,
                    "job_id": job.id,
                    "box": [left, top, right, bottom],
                    **label,
                    "source": f"review:{review.decision}" if review else "model",
                    "reviewer": review.reviewer if review else None,
                    "reviewed_at": review.reviewed_at.isoformat() if review else None,
                }
            )
            if review is not None and label["class_id"] is not None:
                found.crops.append(crop(rgb, (left, top, right, bottom)))
                found.labels.append(int(label["class_id"]))
                found.tracks.append(review.id)
    return found


def _digest(parts: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in sorted(parts):
        h.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.hexdigest()


def write(found: Export, out: Path, tenant: str) -> dict[str, Any]:
    """Write the folder; return its manifest. The version hashes the content, not the zip around
    the arrays (np.savez stamps the time), so the same reviews always give the same version."""
    (out / "images").mkdir(parents=True)
    for name, data in found.photos.items():
        (out / "images" / name).write_bytes(data)
    texts = {
        "gt.txt": "".join(f"{line}\n" for line in found.gt),
        "others.txt": "".join(f"{line}\n" for line in found.others),
        "signs.jsonl": "".join(json.dumps(s, sort_keys=True) + "\n" for s in found.signs),
    }
    for name, text in texts.items():
        (out / name).write_text(text)
    images = np.stack(found.crops) if found.crops else np.zeros((0, CROP_SIDE, CROP_SIDE, 3), np.uint8)
    labels, track = np.asarray(found.labels, np.uint8), np.asarray(found.tracks, np.int32)
    np.savez(out / "crops.npz", images=images, labels=labels, track=track)
    parts = [(f"images/{n}", d) for n, d in found.photos.items()]
    parts += [(n, t.encode()) for n, t in texts.items()]
    parts += [(f"crops.npz:{k}", a.tobytes()) for k, a in (("images", images), ("labels", labels), ("track", track))]
    manifest = {
        "format": FORMAT,
        "version": f"sha256:{_digest(parts)}",
        "tenant": tenant,
        "exported_at": datetime.now(UTC).isoformat(),
        "photos": len(found.photos),
        "boxes": len(found.gt) + len(found.others),
        "boxes_outside_43": len(found.others),
        "crops": int(len(images)),
        "reviews": found.reviews,
        "skipped_photos_with_pending_reviews": found.skipped_pending,
        "skipped_photos_no_longer_stored": found.skipped_missing,
    }
    return manifest


def log_to_mlflow(out: Path, manifest: dict[str, Any], tracking_uri: str) -> str:
    """One run in the experiment `roadsigns-datasets` with the folder as its dataset input; its id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    # MLflow prints the run's link when it ends: to stderr, so stdout stays the manifest alone.
    with contextlib.redirect_stdout(sys.stderr):
        mlflow.set_experiment("roadsigns-datasets")
        with mlflow.start_run(run_name=f"reviews {manifest['version'][7:19]}") as run:
            mlflow.log_input(dataset_input(out, manifest), context="export")
            mlflow.log_params({k: manifest[k] for k in ("tenant", "photos", "boxes", "crops", "reviews", "version")})
            mlflow.log_dict(manifest, "manifest.json")
    return str(run.info.run_id)


def dataset_input(out: Path, manifest: dict[str, Any]) -> MetaDataset:
    """The folder as an MLflow dataset: its path, named by tenant, digest from its version."""
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset

    source = get_dataset_source_from_json(json.dumps({"uri": str(out.resolve())}), "local")
    # mlflow's types leave `profile` abstract; MetaDataset has it (None) at run time.
    return MetaDataset(  # type: ignore[abstract]
        source, name=f"roadsigns-reviews-{manifest['tenant']}", digest=manifest["version"][7:19]
    )
