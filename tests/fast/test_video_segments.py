"""A video split across detector tasks (roadsigns.detector.segments): the segment plan, one sampling
grid whatever the range, the barrier in Redis that lets the last segment's task track them all,
and the tracks that come out the same as one task's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from roadsigns.cli.pipeline import Pipeline
from roadsigns.detector import segments
from roadsigns.detector.video import (
    SegmentDetections,
    VideoInfo,
    detect_frames,
    plan_segments,
    probe,
    sample_frames,
    track_frames,
    track_video,
)
from roadsigns.shared import pipeline
from roadsigns.shared.pipeline import DETECT_VIDEO, DETECT_VIDEO_SEGMENT, StageFailed
from roadsigns.shared.schemas import VideoDetectResult, VideoRequest, VideoSegmentRequest
from roadsigns.shared.settings import Settings
from roadsigns.shared.tasks import TaskName, make_celery
from tests.conftest import PHOTOS
from tests.fast.test_pipeline import sent
from tests.test_video import write_video

LOG = logging.getLogger("roadsigns.test")


def test_a_video_is_split_into_equal_segments_of_about_the_length_asked() -> None:
    assert plan_segments(4.0, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, None)]
    third = 25.0 / 3
    assert plan_segments(25.0, 10.0) == [(0.0, third), (third, 2 * third), (2 * third, None)]  # no 5-s stub
    assert len(plan_segments(120.0, 10.0)) == 12  # the longest video the frame limit lets in
    # One segment: a video no longer than one, one of unknown length, or segmentation off.
    for duration, segment_s in [(9.9, 10.0), (10.0, 10.0), (0.0, 10.0), (120.0, 0.0)]:
        assert plan_segments(duration, segment_s) == [(0.0, None)]


def test_the_segments_sample_exactly_the_frames_of_the_whole_video(tmp_path: Path) -> None:
    """30 fps sampled at 7 (not a divisor), cut at boundaries between frames of the grid: each
    sampled frame is in exactly one segment, at the same time, with the same pixels."""
    path = tmp_path / "count.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 90))
    for i in range(90):
        frame = np.full((90, 160, 3), 40, np.uint8)
        cv2.putText(frame, str(i), (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(frame)
    writer.release()
    whole = list(sample_frames(path, 7))
    assert len(whole) == 21
    ranges = plan_segments(probe(path).duration_s, 0.7)
    assert len(ranges) == 5
    split = [f for start, end in ranges for f in sample_frames(path, 7, start, end)]
    assert [t for t, _ in split] == [t for t, _ in whole]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(split, whole, strict=True))


def test_the_last_segment_detected_is_known_once_whatever_is_delivered_again(broker: str) -> None:
    request = VideoRequest(job_id="a" * 32, blob_key="uploads/a.mp4", submitted_at=1.0, fps=5, attempt=2)
    plan = segments.plan(request, VideoInfo(fps=10, frame_count=40, width=800, height=470), 1.0)
    assert [(s.index, s.count, s.start_s, s.end_s) for s in plan] == [
        (0, 4, 0.0, 1.0),
        (1, 4, 1.0, 2.0),
        (2, 4, 2.0, 3.0),
        (3, 4, 3.0, None),
    ]
    for message in plan:  # what Celery's JSON carries
        assert VideoSegmentRequest.model_validate(json.loads(json.dumps(message.model_dump(mode="json")))) == message
        assert (message.job_id, message.attempt, message.blob_key, message.fps) == ("a" * 32, 2, "uploads/a.mp4", 5)
    client = redis.Redis.from_url(broker)
    assert [segments.mark_detected(client, plan[i]) for i in (2, 2, 0, 1)] == [1, 1, 2, 3]  # 2 again: counted once
    assert segments.mark_detected(client, plan[3]) == 4  # the last: this task tracks them all
    assert segments.mark_detected(client, plan[3]) == 4  # delivered again: tracks again (the same result)
    again = plan[0].model_copy(update={"attempt": 3})  # the reconciler's next attempt starts over
    assert segments.mark_detected(client, again) == 1
    # Progress: frames over all the segments; a segment delivered again counts its frames anew.
    assert [segments.record_frames(client, plan[i], n) for i, n in [(0, 5), (1, 3), (0, 2)]] == [5, 8, 5]


def test_a_stage_may_send_several_messages_or_none_and_segments_count_their_own_deliveries(broker: str) -> None:
    settings = Settings(broker_url=broker, max_deliveries=1)
    app = make_celery("probe", settings)
    request = VideoRequest(job_id="b" * 32, blob_key="uploads/b.mp4", submitted_at=1.0, fps=5)
    plan = segments.plan(request, VideoInfo(fps=10, frame_count=20, width=800, height=470), 1.0)
    fan_out = pipeline.stage_task(app, DETECT_VIDEO, lambda r: plan, settings, LOG)
    fan_out(request.model_dump(mode="json"))
    queued = sent(broker, "detect")
    assert [name for name, _ in queued] == [TaskName.DETECT_VIDEO_SEGMENT] * 2
    assert [VideoSegmentRequest.model_validate(args[0]) for _, args in queued] == plan
    waiting = pipeline.stage_task(app, DETECT_VIDEO_SEGMENT, lambda r: None, settings, LOG)
    for message in plan:  # one delivery each: neither is a redelivery of the other
        waiting(message.model_dump(mode="json"))
    assert sent(broker, "ocr") == [] and sent(broker, "track") == []
    waiting(plan[0].model_dump(mode="json"))  # the same segment again: its process died
    [(name, [failed])] = sent(broker, "track")
    assert name == TaskName.TRACK_FAIL and StageFailed.model_validate(failed).stage == "detect_video_segment"


@pytest.fixture(scope="module")
def models() -> Pipeline:
    return Pipeline(Settings(), ocr=False)


def test_tracks_over_segments_detected_apart_are_the_tracks_of_the_whole_video(
    models: Pipeline, tmp_path: Path
) -> None:
    """What the detector pool does with a split video, in this process: each segment detected on its
    own, through the JSON it is stored as, tracked together (the segments in any order)."""
    video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg", seconds=3.0)
    whole = track_video(video, models.detector, 5.0)
    stored = [
        SegmentDetections.model_validate_json(detect_frames(video, models.detector, 5.0, start, end).model_dump_json())
        for start, end in plan_segments(probe(video).duration_s, 1.0)
    ]
    assert [len(s.frames) for s in stored] == [5, 5, 5]
    split = track_frames(stored[::-1], 5.0)
    assert isinstance(split, VideoDetectResult) and len(whole.tracks) >= 3
    assert split.model_dump(exclude={"timings_ms", "submitted_at"}) == whole.model_dump(
        exclude={"timings_ms", "submitted_at"}
    )
