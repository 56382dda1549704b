"""The reader's half of a video: read each track's sharpest crops, vote the text, name the sign.

A track arrives with its class voted over its frames (roadsigns.detector.video). Only its few
sharpest crops are read, not every frame; the text read most surely over them (summed reading
confidence) is the track's, and the track is named from it as a photo's sign is
(`name_sign`: a sure speed reading names a speed limit; else the voted class, else the shape).
"""

from __future__ import annotations

import time

from roadsigns.ocr.reader import Reading, SignReader
from roadsigns.ocr.service import decode_crop, name_sign
from roadsigns.ocr.shape import ShapeCue, shape_cue
from roadsigns.shared.schemas import TrackedSign, VideoDetectResult, VideoResult, VideoTrack


def vote_reading(readings: list[Reading]) -> Reading | None:
    """The text with the most summed confidence over the readings (empty text never wins over a
    read one), as its most confident reading, sure if any reading of that text was."""
    texts: dict[str, float] = {}
    for r in readings:
        if r.text:
            texts[r.text] = texts.get(r.text, 0.0) + r.confidence
    if not texts:
        return readings[0] if readings else None
    text = max(texts, key=lambda t: texts[t])
    same = [r for r in readings if r.text == text]
    best = max(same, key=lambda r: r.confidence)
    return Reading(best.text, best.confidence, best.mode, sure=any(r.sure for r in same))


def read_track(track: TrackedSign, reader: SignReader | None, min_class_probability: float) -> VideoTrack:
    d = track.detection
    crops = [decode_crop(b64) for b64 in track.sharpest_crops_png_b64] or [decode_crop(d.crop_png_b64)]
    cues: list[ShapeCue] = [shape_cue(c) for c in crops]
    reading: Reading | None = None
    cue = cues[0]
    if reader is not None:
        readings = [reader.read(c, d.class_id, d.class_probability, q) for c, q in zip(crops, cues, strict=True)]
        reading = vote_reading(readings)
        if reading is not None and reading.text:
            cue = cues[next(i for i, r in enumerate(readings) if r.text == reading.text)]
    sign = name_sign(d, reading, cue, min_class_probability)
    return VideoTrack(
        track_id=track.track_id,
        class_id=sign.class_id,
        class_name=sign.class_name,
        category=sign.category,
        text=sign.text,
        confidence=sign.confidence,
        first_seen_s=track.first_seen_s,
        last_seen_s=track.last_seen_s,
        frames=track.frames,
        bbox=d.bbox,
        best_frame_s=track.best_frame_s,
    )


def read_video(request: VideoDetectResult, reader: SignReader | None, min_class_probability: float) -> VideoResult:
    """Every track read (no reader: named by the voted class, else the shape) and named; those
    whose final confidence reaches the request's threshold reported."""
    t0 = time.perf_counter()
    tracks, crops = [], []
    for track in request.tracks:
        named = read_track(track, reader, min_class_probability)
        if named.confidence >= request.min_confidence:
            tracks.append(named)
            crops.append(track.detection.crop_png_b64)
    versions = {**request.model_versions, **({"ocr": reader.version} if reader else {})}
    return VideoResult(
        job_id=request.job_id,
        attempt=request.attempt,
        submitted_at=request.submitted_at,
        frames_analysed=request.frames_analysed,
        duration_s=request.duration_s,
        tracks=tracks,
        crops_png_b64=crops,
        timings_ms={**request.timings_ms, "ocr_ms": (time.perf_counter() - t0) * 1000},
        model_versions=versions,
        image_size=request.image_size,
    )
