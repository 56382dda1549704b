"""`roadsigns analyze PATH...`, `roadsigns submit PATH... --url URL`, `roadsigns inventory PHOTOS_DIR`,
`roadsigns evaluate detection|classification`, `roadsigns dataset export --out DIR`,
`roadsigns promote --alias ALIAS`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadsigns.shared.settings import Settings, get_settings

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from roadsigns.cli.groundtruth import Box
    from roadsigns.cli.pipeline import Pipeline
    from roadsigns.sdk.models import Job
    from roadsigns.shared.gpxtrack import VideoGpx
    from roadsigns.shared.inventory import Sighting


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "imgsz", None):
        overrides["detector_imgsz"] = args.imgsz
    return get_settings().model_copy(update=overrides)


def _images(paths: list[Path], videos: bool = False) -> list[Path]:
    """The photos (and videos, if asked) named on the command line (folders searched), or a UsageError."""
    from roadsigns.cli.pipeline import collect_images

    try:
        images = collect_images(paths, videos)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if not images:
        raise UsageError(f"no images{' or videos' if videos else ''} found in the given paths")
    return images


def _write_results(results: list[dict], output: Path | None) -> int:
    """The JSON `analyze` and `submit` write (to OUTPUT, else stdout); exit status 1 if any photo failed."""
    text = json.dumps(results, indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        print(text)
    return 1 if any("error" in r for r in results) else 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from roadsigns.cli.pipeline import Pipeline, annotate, photo_fix
    from roadsigns.detector.video import VideoUnreadable, is_video

    if args.fps is not None and not 0 < args.fps <= 60:
        raise UsageError(f"--fps must be above 0 and at most 60 (got {args.fps:g})")
    if args.min_track_frames is not None and args.min_track_frames < 1:
        raise UsageError(f"--min-track-frames must be at least 1 (got {args.min_track_frames})")
    images = _images(args.paths, videos=True)
    gpx = _video_gpx(args, [p for p in images if is_video(p)])
    pipeline = Pipeline(_settings(args), ocr=not args.no_ocr)
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for path in tqdm(images, desc="analyze", unit="file", file=sys.stderr, disable=args.quiet):
        if is_video(path):  # one entry per physical sign (roadsigns.detector.video); not annotated
            with tqdm(desc=path.name, unit="frame", file=sys.stderr, leave=False, disable=args.quiet) as bar:

                def progress(done: int, total: int, bar: tqdm = bar) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                try:
                    video = pipeline.analyze_video(path, args.fps, args.min_track_frames, progress)
                except VideoUnreadable as exc:
                    results.append({"file": str(path), "error": f"video: {exc}"})
                    continue
            if gpx is not None:  # each track where the GPX track has the camera at its best frame
                for track in video["tracks"]:
                    fix = gpx.position(track["best_frame_s"])
                    track["location"] = fix.location() if fix is not None else None
            results.append({"file": str(path), **video})
            continue
        data = path.read_bytes()
        try:
            analysis = pipeline.analyze(data)
        except ValueError as exc:  # an undecodable file: report it, keep going
            results.append({"file": str(path), "error": str(exc)})
            continue
        results.append({"file": str(path), **analysis.as_json(photo_fix(data))})
        if args.annotate:
            import cv2

            cv2.imwrite(str(args.annotate / f"{path.stem}.jpg"), annotate(data, analysis.signs))
    return _write_results(results, args.output)


def _video_gpx(args: argparse.Namespace, videos: list[Path]) -> VideoGpx | None:
    """`--gpx` (and `--gpx-offset-s`): the one video's GPX track, aligned to it, or a UsageError."""
    from roadsigns.detector.video import VideoUnreadable, probe
    from roadsigns.shared.gpxtrack import GpxRefused, aligned, parse

    if args.gpx is None:
        if args.gpx_offset_s is not None:
            raise UsageError("--gpx-offset-s needs --gpx")
        return None
    if len(videos) != 1:
        raise UsageError(f"--gpx is the track of one video: give exactly one video (got {len(videos)})")
    if args.gpx_offset_s is not None and not math.isfinite(args.gpx_offset_s):
        raise UsageError("--gpx-offset-s must be a finite number of seconds")
    try:
        return aligned(parse(args.gpx.read_bytes()), probe(videos[0]).duration_s, args.gpx_offset_s)
    except OSError as exc:
        raise UsageError(f"--gpx {args.gpx}: {exc.strerror or exc}") from None
    except GpxRefused as exc:
        raise UsageError(f"--gpx {args.gpx}: {exc}") from None
    except VideoUnreadable as exc:
        raise UsageError(f"{videos[0]}: video: {exc}") from None


def job_as_analysis(job: Job) -> dict[str, Any]:
    """A finished job in the shape `roadsigns analyze` writes for one photo."""
    if job.status != "done":
        return {"error": job.error or f"job {job.id} {job.status}"}
    return {
        "location": job.location.model_dump(mode="json") if job.location else None,
        "signs": [s.model_dump(mode="json", exclude={"crop_url"}) for s in job.signs or []],
        "timings_ms": {k: round(v, 1) for k, v in (job.timings_ms or {}).items()},
        "model_versions": job.model_versions or {},
        "image_size": [job.image_width, job.image_height],
    }


def cmd_submit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from roadsigns.sdk import AuthenticationError, Client, ClientError, RateLimited, RoadsignsError, TransportError

    images = _images(args.paths)
    found: dict[Path, dict] = {}
    try:
        with (
            Client(args.url, api_key=args.api_key) as client,
            tqdm(total=len(images), desc="submit", unit="img", file=sys.stderr, disable=args.quiet) as bar,
        ):
            submitted: dict[str, Path] = {}
            for path in images:
                try:
                    submitted[client.submit(path).id] = path
                except (AuthenticationError, RateLimited):
                    raise
                except ClientError as exc:  # a photo the gateway refuses: report it, keep going, as analyze does
                    found[path] = {"error": exc.message}
                    bar.update()
            for job in client.as_finished(submitted, timeout=args.timeout):
                found[submitted[job.id]] = job_as_analysis(job)
                bar.update()
    except TransportError as exc:
        raise UsageError(str(exc)) from None
    except RoadsignsError as exc:  # refused for every photo (a bad key, a rate limit), or a wait ran out
        raise UsageError(f"{args.url}: {exc}") from None
    results = [{"file": str(p), **found[p]} for p in images]
    return _write_results(results, args.output)


def cmd_inventory(args: argparse.Namespace) -> int:
    """GeoJSON (or CSV, for an OUTPUT ending .csv) of the physical signs in geotagged photos, and
    in videos with a GPX track beside them (`drive.mp4` and `drive.gpx`, the video starting at the
    track's first point), merged as GET /inventory merges them; `files` where the API says `job_ids`."""
    from datetime import UTC, datetime

    from tqdm import tqdm

    from roadsigns.cli.pipeline import Pipeline, photo_fix
    from roadsigns.detector.video import is_video
    from roadsigns.shared import inventory

    found = _images(args.paths, videos=True)
    images = [p for p in found if not is_video(p)]
    videos = [p for p in found if is_video(p) and p.with_suffix(".gpx").is_file()]
    settings = _settings(args)
    merge_m = settings.inventory_merge_m if args.merge_m is None else args.merge_m
    if merge_m < 0:
        raise UsageError(f"--merge-m must not be negative (got {merge_m:g})")
    located = [(path, fix) for path in images if (fix := photo_fix(path.read_bytes())) is not None]
    if not located and not videos:
        raise UsageError(
            f"none of the {len(images)} photos carries an EXIF GPS position, and no video has a GPX track beside it"
        )
    pipeline = Pipeline(settings, ocr=not args.no_ocr)
    sightings: list[inventory.Sighting] = []
    failed = 0
    for path in videos:
        try:
            video_sightings = _video_sightings(pipeline, path)
        except (ValueError, OSError) as exc:  # an unreadable video or a GPX that cannot place it: say so, keep going
            print(f"roadsigns: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        sightings += video_sightings
    for path, fix in tqdm(located, desc="inventory", unit="img", file=sys.stderr, disable=args.quiet):
        try:
            analysis = pipeline.analyze(path.read_bytes())
        except ValueError as exc:  # an undecodable file: say so, keep going
            print(f"roadsigns: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        # When: the GPS clock's time (UTC), else the file's modification time.
        seen_at = fix.taken_at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
        sightings += [
            inventory.Sighting(fix.lat, fix.lon, s.class_id, s.class_name, s.text, seen_at, str(path))
            for s in analysis.signs
        ]
    signs = inventory.merge(sightings, merge_m)
    if args.output and args.output.suffix.lower() == ".csv":
        text = inventory.to_csv(signs, sources_as="files")
    else:
        text = json.dumps(inventory.feature_collection(signs, sources_as="files"), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    print(
        f"roadsigns: {len(signs)} signs from {len(sightings)} sightings in {len(located) + len(videos) - failed}"
        f" located photos and videos ({len(images) - len(located)} without GPS skipped,"
        f" {len(found) - len(images) - len(videos)} videos without a GPX track skipped, within {merge_m:g} m merged)",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _video_sightings(pipeline: Pipeline, path: Path) -> list[Sighting]:
    """A video's located tracks as sightings, placed by the GPX track beside it (`<stem>.gpx`)
    at their best frames; ValueError for an unreadable video or a GPX that cannot place it."""
    from roadsigns.detector.video import probe
    from roadsigns.shared.gpxtrack import aligned, parse
    from roadsigns.shared.inventory import Sighting

    gpx = aligned(parse(path.with_suffix(".gpx").read_bytes()), probe(path).duration_s)
    video = pipeline.analyze_video(path)
    out = []
    for t in video["tracks"]:
        fix = gpx.position(t["best_frame_s"])
        if fix is not None and fix.taken_at is not None:
            out.append(Sighting(fix.lat, fix.lon, t["class_id"], t["class_name"], t["text"], fix.taken_at, str(path)))
    return out


def cmd_eval_detection(args: argparse.Namespace) -> int:
    from roadsigns.cli.evaluation import PhotoUnreadable, photo_names, predict_photos
    from roadsigns.cli.groundtruth import GroundTruthError, read_gt
    from roadsigns.cli.metrics import detection_report
    from roadsigns.cli.pipeline import Pipeline

    if not args.images.is_dir():
        raise UsageError(f"--images {args.images} is not a folder")
    try:
        gt = read_gt(args.gt)
    except GroundTruthError as exc:
        raise UsageError(str(exc)) from None
    names = photo_names(args.images)
    if not names:
        raise UsageError(f"no images in {args.images}")
    missing = sorted(set(gt) - set(names))
    if missing:
        raise UsageError(f"{args.gt} names {len(missing)} image(s) not in {args.images}, e.g. {missing[0]}")
    settings = _settings(args)
    pipeline = Pipeline(settings, ocr=not args.no_ocr)
    try:
        preds, spent = predict_photos(pipeline, args.images, names, args.quiet)
    except PhotoUnreadable as exc:
        raise UsageError(str(exc)) from None
    report = detection_report(gt, preds, settings.min_confidence)
    report.update(
        images=len(names),
        seconds_per_image=spent / len(names),
        model_versions=pipeline.detector.versions,
        imgsz=pipeline.detector.imgsz,
        backend=pipeline.detector.backend,
    )
    print(json.dumps(report, indent=2))
    return 0


def _labelled_crops(path: Path) -> tuple[Any, Any]:
    """`images` (N x H x W x 3 uint8 RGB) and `labels` (N class ids) of an .npz, or a UsageError."""
    import numpy as np

    try:
        with np.load(path) as z:
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"--npz {path}: need an .npz with arrays 'images' and 'labels' ({exc})") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UsageError(f"'images' must be N x H x W x 3 uint8 RGB, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UsageError(f"'labels' must be a vector of {len(images)} class ids, got shape {labels.shape}")
    if len(images) == 0:
        raise UsageError("the .npz holds no images")
    return images, labels


def _boxed_crops(
    args: argparse.Namespace, settings: Settings, keep: Callable[[Box], bool]
) -> tuple[list[NDArray[np.uint8]], list[Box]]:
    """BGR crops of the ground truth's signs that `keep` accepts, cut from their true boxes as the
    detector cuts them (`square_crop` with the service's margin), and those boxes; or a UsageError.

    Cutting from the true box isolates one model from the localiser: a sign the detector missed
    or boxed badly does not count against the classifier or the reader.
    """
    import cv2

    from roadsigns.cli.groundtruth import GroundTruthError, read_gt
    from roadsigns.detector.model import square_crop

    if args.images is None or args.gt is None:
        raise UsageError("give --npz, or --images and --gt")
    try:
        gt = read_gt(args.gt)
    except GroundTruthError as exc:
        raise UsageError(str(exc)) from None
    crops, boxes = [], []
    for name, photo_boxes in sorted(gt.items()):
        wanted = [b for b in photo_boxes if keep(b)]
        if not wanted:
            continue
        photo = cv2.imread(str(args.images / name))
        if photo is None:
            raise UsageError(f"{args.images / name}: missing or not an image")
        for box in wanted:
            crops.append(square_crop(photo, box.xyxy, 1 + settings.crop_margin))
            boxes.append(box)
    return crops, boxes


def cmd_eval_classification(args: argparse.Namespace) -> int:
    """The classifier alone: on an .npz of crops, or on the signs of labelled photos cut from their
    true boxes (`--images/--gt`; signs with no class, such as a "speed limit 55", are left out).

    The photos are the second test: GTSDB's camera is not GTSRB's, and the classifier never
    trains on GTSDB's signs, so they show how a recipe carries to crops it was not tuned on.
    """
    from collections import Counter

    import numpy as np

    from roadsigns.cli.evaluation import classify_crops
    from roadsigns.cli.pipeline import Pipeline
    from roadsigns.shared import classes

    settings = _settings(args)
    if args.npz is not None:
        images, labels = _labelled_crops(args.npz)
    else:
        images, boxes = _boxed_crops(args, settings, lambda b: b.class_id >= 0)
        if not images:
            raise UsageError("no signs with a class in the labelled data")
        labels = np.array([b.class_id for b in boxes])
    detector = Pipeline(settings, ocr=False).detector
    predicted, spent = classify_crops(detector, images, bgr=args.npz is None)
    truth = labels.astype(np.int64)
    confused = Counter(
        f"{classes.get(int(t)).name} as {classes.get(int(p)).name}"
        for t, p in zip(truth, predicted, strict=True)
        if t != p
    )
    print(
        json.dumps(
            {
                "accuracy": float((predicted == truth).mean()),
                "n": int(len(images)),
                "errors": int((predicted != truth).sum()),
                "most_confused": dict(confused.most_common(8)),
                "seconds_per_image": spent / len(images),
                "model_versions": detector.versions,
            },
            indent=2,
        )
    )
    return 0


def cmd_eval_reading(args: argparse.Namespace) -> int:
    """The digit reader alone on the speed limits of labelled data, cut from their true boxes.

    `evaluate detection`'s `ocr_exact` counts a sign the detector missed as misread, and its crop
    comes from the detector's box; this isolates the reader, to compare readers (a folder of
    other ones in ROADSIGNS_OCR_WEIGHTS_DIR) on the same crops.
    """
    from collections import Counter

    import numpy as np

    from roadsigns.ocr.learned import LearnedReader, weights_dir
    from roadsigns.shared import classes

    settings = _settings(args)
    crops: list[np.ndarray] = []
    texts: list[str] = []
    if args.npz is not None:
        images, labels = _labelled_crops(args.npz)
        for image, label in zip(images, labels, strict=True):
            text = classes.get(int(label)).text or ""
            if text.isdigit():
                crops.append(np.ascontiguousarray(image[:, :, ::-1]))  # the .npz holds RGB, the reader takes BGR
                texts.append(text)
    else:
        crops, boxes = _boxed_crops(args, settings, lambda b: (b.expected_text or "").isdigit())
        texts = [str(b.expected_text) for b in boxes]
    if not crops:
        raise UsageError("no speed-limit signs in the labelled data")
    try:
        reader = LearnedReader(weights_dir(settings.ocr_weights_dir) / "digits.onnx")
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    read = [reader.read(crop)[0] for crop in crops]
    wrong = Counter(f"{t} read {r or 'nothing'}" for t, r in zip(texts, read, strict=True) if t != r)
    report = {
        "exact": float(np.mean([t == r for t, r in zip(texts, read, strict=True)])),
        "n": len(crops),
        "most_misread": dict(wrong.most_common(8)),
        "model_version": reader.version,
    }
    print(json.dumps(report, indent=2))
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    """The tenant's reviewed photos and crops as a training data set (roadsigns.cli.dataset), from
    the database and blob store the settings name; logged to MLflow when a tracking URI is set."""
    from sqlalchemy.exc import OperationalError

    from roadsigns.cli import dataset
    from roadsigns.shared.blobstore import BlobStore
    from roadsigns.shared.db.session import get_engine, session_scope

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"--out {args.out} exists and is not an empty folder")
    settings = get_settings()
    engine = get_engine(settings.database_url, "roadsigns-cli")
    try:
        with session_scope(engine) as session:
            found = dataset.collect(session, BlobStore(settings.blob_dir), args.tenant, settings.review_below)
    except OperationalError as exc:
        raise UsageError(f"cannot read the database (ROADSIGNS_DATABASE_URL): {exc.orig}") from None
    finally:
        engine.dispose()
    if not found.photos:
        raise UsageError(
            f"tenant {args.tenant!r} has no reviewed photo to export"
            f" ({found.skipped_pending} still have signs waiting for a decision)"
        )
    manifest = dataset.write(found, args.out, args.tenant)
    tracking_uri = settings.mlflow_tracking_uri
    if tracking_uri and not args.no_mlflow:
        manifest["mlflow_run_id"] = dataset.log_to_mlflow(args.out, manifest, tracking_uri)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Move `--alias` to the candidate's versions if no headline metric drops beyond the tolerance
    (roadsigns.cli.promote); the decision as JSON. Exit 0 promoted (or nothing to do), 1 refused."""
    import os

    from roadsigns.cli import promote
    from roadsigns.cli.evaluation import PhotoUnreadable
    from roadsigns.cli.groundtruth import GroundTruthError

    settings = _settings(args)
    tracking_uri = args.tracking_uri or settings.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise UsageError("no registry: set ROADSIGNS_MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_URI, or --tracking-uri)")
    if (args.images is None) != (args.gt is None):
        raise UsageError("--images and --gt go together")
    evalset = promote.EvalSet(args.images, args.gt, args.npz) if args.images else promote.heldout()
    if args.npz and not args.images:
        evalset = promote.EvalSet(evalset.images, evalset.gt, args.npz)
    for path in (evalset.images, evalset.gt, evalset.npz):
        if path is not None and not path.exists():
            hint = " (make heldout writes the default set)" if not args.images else ""
            raise UsageError(f"evaluation set: {path} does not exist{hint}")
    if args.tolerance < 0:
        raise UsageError(f"--tolerance must not be negative (got {args.tolerance:g})")
    try:
        result = promote.promote(
            settings, tracking_uri, args.alias, args.candidate, evalset, args.tolerance, args.force, args.quiet
        )
    except (LookupError, PhotoUnreadable, GroundTruthError) as exc:  # no such alias; a bad evaluation set
        raise UsageError(str(exc)) from None
    print(json.dumps(result, indent=2))
    return 1 if result["decision"] == "refused" else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roadsigns", description="Find, classify and read traffic signs.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
        p.add_argument("--imgsz", type=int, help="longest side a photo runs at (default 2048)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--no-ocr", action="store_true", help="skip reading text")

    a = sub.add_parser(
        "analyze", help="analyze photos and videos (files or folders); JSON on stdout, one track per sign in a video"
    )
    a.add_argument("paths", nargs="+", type=Path)
    a.add_argument("--output", "-o", type=Path, help="write the JSON here instead of stdout")
    a.add_argument("--annotate", type=Path, metavar="DIR", help="also write annotated images (of photos) into DIR")
    a.add_argument("--fps", type=float, help="video frames analysed per second (default ROADSIGNS_VIDEO_FPS, 5)")
    a.add_argument(
        "--min-track-frames",
        type=int,
        help="a video track seen in fewer sampled frames is flicker (default ROADSIGNS_VIDEO_MIN_TRACK_FRAMES, 2)",
    )
    a.add_argument(
        "--gpx", type=Path, help="the video's GPX track: each track gets its best frame's position (one video only)"
    )
    a.add_argument(
        "--gpx-offset-s",
        type=float,
        help="seconds into the GPX track at which the video starts (default 0: at the track's first point)",
    )
    common(a)
    a.set_defaults(func=cmd_analyze)

    s = sub.add_parser("submit", help="send photos to a running gateway; the same JSON as analyze")
    s.add_argument("paths", nargs="+", type=Path)
    s.add_argument("--url", required=True, help="the gateway, e.g. http://localhost:8000")
    s.add_argument("--api-key", help="an API key of the deployment (X-API-Key)")
    s.add_argument("--output", "-o", type=Path, help="write the JSON here instead of stdout")
    s.add_argument("--timeout", type=float, default=600, help="seconds to wait for all results (default 600)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_submit)

    i = sub.add_parser(
        "inventory",
        help="GeoJSON of the signs in geotagged photos and in videos with a GPX track beside them"
        " (drive.mp4 + drive.gpx; files or folders), one per sign",
    )
    i.add_argument("paths", nargs="+", type=Path, metavar="PHOTOS_DIR")
    i.add_argument("--output", "-o", type=Path, help="write the GeoJSON here (CSV for a name ending .csv), not stdout")
    i.add_argument(
        "--merge-m", type=float, help="merge sightings this close, in metres (default ROADSIGNS_INVENTORY_MERGE_M, 15)"
    )
    common(i)
    i.set_defaults(func=cmd_inventory)

    ds = sub.add_parser("dataset", help="training data from reviewed signs")
    dsub = ds.add_subparsers(dest="what", required=True)
    x = dsub.add_parser(
        "export",
        help="write the reviewed photos (GTSDB gt.txt) and crops (npz) into DIR; reads ROADSIGNS_DATABASE_URL "
        "and ROADSIGNS_BLOB_DIR",
    )
    x.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder")
    x.add_argument("--tenant", default="default", help="whose reviews (default: default, the tenant without keys)")
    x.add_argument("--no-mlflow", action="store_true", help="do not log the export even if a tracking URI is set")
    x.set_defaults(func=cmd_dataset_export)

    pr = sub.add_parser(
        "promote",
        help="point a registry alias at the candidate's versions if they are no worse on the evaluation set",
    )
    pr.add_argument("--alias", required=True, help="the alias to move, e.g. production (what workers serve)")
    pr.add_argument("--candidate", default="candidate", help="the alias naming the new versions (default: candidate)")
    pr.add_argument("--images", type=Path, help="evaluation photos (default: .train/heldout/images)")
    pr.add_argument("--gt", type=Path, help="their GTSDB gt.txt (default: .train/heldout/gt.txt)")
    pr.add_argument("--npz", type=Path, help="crops for classification accuracy (default: the held-out set's)")
    pr.add_argument(
        "--tolerance", type=float, default=0.005, help="largest drop allowed in any headline metric (default 0.005)"
    )
    pr.add_argument("--force", action="store_true", help="move the alias even if refused (logged as forced)")
    pr.add_argument("--tracking-uri", help="the registry (default ROADSIGNS_MLFLOW_TRACKING_URI, MLFLOW_TRACKING_URI)")
    pr.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    pr.add_argument("--imgsz", type=int, help="longest side a photo runs at (default 2048)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_promote)

    e = sub.add_parser("evaluate", help="measure accuracy on labelled data")
    esub = e.add_subparsers(dest="what", required=True)
    d = esub.add_parser("detection", help="photos + GTSDB gt.txt")
    d.add_argument("--images", type=Path, required=True)
    d.add_argument("--gt", type=Path, required=True)
    common(d)
    d.set_defaults(func=cmd_eval_detection)
    c = esub.add_parser(
        "classification", help="the classifier alone: crops with labels, or signs cut from their true boxes"
    )
    c.add_argument("--npz", type=Path, help="crops with labels")
    c.add_argument("--images", type=Path, help="photos, with --gt (every sign with a class is classified)")
    c.add_argument("--gt", type=Path)
    common(c)
    c.set_defaults(func=cmd_eval_classification)
    r = esub.add_parser("reading", help="the digit reader alone on speed limits cut from their true boxes")
    r.add_argument("--npz", type=Path, help="crops with labels (speed-limit classes are read)")
    r.add_argument("--images", type=Path, help="photos, with --gt (signs whose text is a number are read)")
    r.add_argument("--gt", type=Path)
    r.add_argument("--quiet", action="store_true", help="accepted as the other evaluations accept it (no progress bar)")
    r.set_defaults(func=cmd_eval_reading)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"roadsigns: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
