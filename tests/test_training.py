"""The training pipeline on a tiny data set: it trains, logs to MLflow, registers versions,
and a detector built from the registry alias serves them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from roadsigns.cli.groundtruth import read_gt
from tests.conftest import PHOTOS

BIN = Path(sys.executable).parent


def _tiny_npz(path: Path) -> None:
    """Crops of the sample photos' signs, jittered into 8 frames per physical sign (a 'track')."""
    rng = np.random.default_rng(0)
    images, labels, track = [], [], []
    for t, (name, boxes) in enumerate(read_gt(PHOTOS / "gt.txt").items()):
        photo = cv2.imread(str(PHOTOS / name))
        for k, b in enumerate(boxes):
            for _ in range(8):
                m = (b.right - b.left) // 10 + int(rng.integers(0, 3))
                crop = photo[max(0, b.top - m) : b.bottom + m, max(0, b.left - m) : b.right + m]
                images.append(cv2.cvtColor(cv2.resize(crop, (32, 32)), cv2.COLOR_BGR2RGB))
                labels.append(b.class_id)
                track.append(t * 10 + k)
    np.savez(path, images=np.stack(images), labels=np.array(labels, np.uint8), track=np.array(track, np.int32))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("train")
    _tiny_npz(root / "crops.npz")
    config = yaml.safe_load(Path("training/config.yaml").read_text())
    config["data"].update(
        gtsdb_images=str(PHOTOS),
        gtsdb_gt=str(PHOTOS / "gt.txt"),
        gtsrb_npz=str(root / "crops.npz"),
        val_fraction_photos=0.4,
        val_fraction_tracks=0.3,
    )
    config["detector"].update(epochs=1, batch=4)
    # The second stage also trains on the other signs the samples hold (training/gtsdb_other_signs.txt lists 3).
    config["detector_scale"].update(epochs=1, batch=4, zoomed=6, pasted=10, time_hours=None, other_signs=True)
    tune = {"epochs": 1, "lr": 0.0005, "yellow_faces": 0.3}  # 2 epochs, then 1 of the yellow-face fine-tune
    config["classifier"].update(seeds=[1, 2], epochs=2, batch=32, finetune=tune)
    # A localiser trained for two epochs proposes little at the service's floor: the gate sees more.
    config["sign_gate"].update(min_score=0.001)
    for reader in ("digits", "words"):
        config[reader].update(synthetic=300, epochs=1, batch=64, output=str(root / "weights" / f"{reader}.onnx"))
    config.update(output_dir=str(root / "weights"), work_dir=str(root / "work"))
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    tracking = f"sqlite:///{root}/mlflow.db"
    out = subprocess.run(
        [str(BIN / "roadsigns-train"), "--config", str(root / "config.yaml"), "--alias", "test"],
        capture_output=True,
        text=True,
        timeout=900,
        env={"MLFLOW_TRACKING_URI": tracking, "PATH": str(BIN), "HOME": str(root), "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {"root": root, "tracking": tracking, "summary": json.loads(out.stdout)}


def test_training_writes_model_files(trained: dict) -> None:
    weights = trained["root"] / "weights"
    assert (weights / "detector.pt").stat().st_size > 1_000_000
    assert (weights / "classifier.pt").stat().st_size > 100_000
    assert (weights / "digits.onnx").stat().st_size > 100_000
    assert (weights / "words.onnx").stat().st_size > 100_000
    # The classifier is an ensemble of one network per seed, and loads back as one.
    from roadsigns.detector.classifier_net import SignEnsemble, load_classifier

    model = load_classifier(weights / "classifier.pt")
    assert isinstance(model, SignEnsemble) and len(model.members) == 2
    assert model.gate is not None  # the sign gate stage wrote its layer into the same file


def test_training_run_is_tracked_in_mlflow(trained: dict) -> None:
    client = MlflowClient(trained["tracking"])
    run = client.get_run(trained["summary"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["detector.epochs"] == "1"
    for member in (0, 1):
        assert len(client.get_metric_history(run.info.run_id, f"classifier/member{member}/val_accuracy")) == 3
    [ensemble] = client.get_metric_history(run.info.run_id, "classifier/val_accuracy")
    assert 0.0 <= ensemble.value <= 1.0
    assert client.get_metric_history(run.info.run_id, "detector/metrics/mAP50_B")
    # Stage two (every scale) continued from stage one and was logged under its own name.
    assert client.get_metric_history(run.info.run_id, "detector_scale/metrics/mAP50_B")
    # The sign gate was fitted on the stage-two localiser's proposals, signs and not.
    for figure in ("proposals_signs", "proposals_not_signs", "train_signs_kept"):
        assert client.get_metric_history(run.info.run_id, f"sign_gate/{figure}")[0].value > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    for reader in ("digits", "words"):
        assert len(client.get_metric_history(run.info.run_id, f"{reader}/val_exact")) == 1
    assert {"detector", "classifier", "digits", "words", "summary.json"} <= artifacts


def test_versions_registered_with_alias_and_served(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient(trained["tracking"])
    for name in ("roadsigns-detector", "roadsigns-classifier"):
        version = client.get_model_version_by_alias(name, "test")
        assert version.run_id == trained["summary"]["run_id"]

    from roadsigns.detector.service import build_detector
    from roadsigns.shared.settings import Settings

    settings = Settings(mlflow_tracking_uri=trained["tracking"], model_registry_alias="test", detector_imgsz=640)
    detector = build_detector(settings)
    assert detector.versions["detector"].startswith("roadsigns-detector/")
    assert detector.versions["detector"].endswith("@test")
    out = detector.detect(cv2.imread(str(PHOTOS / "00330.jpg")))
    assert isinstance(out.signs, list)
    # The exported graph takes any input size: a phone photo runs at its own size.
    if detector.backend != "torch":
        assert detector.fixed_shape is None
        assert detector.passes(400, 300)[0].shape == (416, 320)


def test_ship_copies_the_trained_files_into_the_packages_and_only_them(trained: dict) -> None:
    """Training never writes the packages' weights; `--stages ship` copies what it wrote there,
    and says which files changed."""
    root = trained["root"]
    config = yaml.safe_load((root / "config.yaml").read_text())
    detector_pkg, ocr_pkg = root / "pkg" / "detector", root / "pkg" / "ocr"
    config["ship"] = {
        str(detector_pkg): ["detector.onnx", "classifier.onnx"],
        str(ocr_pkg): ["digits.onnx", "seg.onnx"],  # a file no stage wrote
    }
    detector_pkg.mkdir(parents=True)
    (detector_pkg / "classifier.onnx").write_bytes((root / "weights" / "classifier.onnx").read_bytes())
    (root / "ship.yaml").write_text(yaml.safe_dump(config))

    def ship() -> dict:
        out = subprocess.run(
            [str(BIN / "roadsigns-train"), "--config", str(root / "ship.yaml"), "--stages", "ship"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": str(BIN), "HOME": str(root)},
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout)["ship"]

    report = ship()
    assert sorted(report["shipped"]) == sorted([str(detector_pkg / "detector.onnx"), str(ocr_pkg / "digits.onnx")])
    assert report["unchanged"] == [str(detector_pkg / "classifier.onnx")]
    assert report["not_trained"] == [str(root / "weights" / "seg.onnx")]
    assert (ocr_pkg / "digits.onnx").read_bytes() == (root / "weights" / "digits.onnx").read_bytes()
    assert ship()["shipped"] == []  # a second ship changes nothing
    refused = subprocess.run(
        [str(BIN / "roadsigns-train"), "--config", str(root / "ship.yaml"), "--stages", "classifier,ship"],
        capture_output=True,
        text=True,
        env={"PATH": str(BIN), "HOME": str(root)},
    )
    assert refused.returncode == 2 and "ship runs on its own" in refused.stderr


def test_the_second_stage_tiles_the_other_signs_too(trained: dict) -> None:
    """Two tiles round each sign and one at random per photo: stage one tiles GTSDB's signs,
    stage two (`other_signs: true`) those and the listed other signs of the same photos."""
    gtsdb, others = read_gt(PHOTOS / "gt.txt"), read_gt(Path("training/gtsdb_other_signs.txt"))
    work = trained["root"] / "work"
    assert any(name in others for name in gtsdb)
    for name, boxes in gtsdb.items():
        stem = Path(name).stem
        for stage, signs in (("detector", len(boxes)), ("detector_scale", len(boxes) + len(others.get(name, [])))):
            tiles = list((work / f"{stage}-data").glob(f"*/images/{stem}_*.jpg"))
            assert len(tiles) == 2 * signs + 1, (stage, name, len(tiles))
