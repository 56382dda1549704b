"""roadsigns.shared.inventory, the pure merging of sightings into physical signs, and its GeoJSON and CSV."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from roadsigns.shared.inventory import BBox, Sighting, feature_collection, haversine_m, merge, to_csv
from tests.geotag import moved

BERLIN = (52.516275, 13.377704)
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def sighting(lat: float, lon: float, source: str, minutes: int = 0, class_id: int | None = 2, text: str = "50"):  # type: ignore[no-untyped-def]
    name = "speed limit 50" if class_id == 2 else ("other sign" if class_id is None else f"class {class_id}")
    return Sighting(lat, lon, class_id, name, text, T0 + timedelta(minutes=minutes), source)


def test_haversine_matches_known_distances() -> None:
    assert haversine_m(*BERLIN, *BERLIN) == 0
    # One degree of latitude is 111.2 km on the mean sphere; Berlin-Paris about 878 km.
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-4)
    assert haversine_m(52.5200, 13.4050, 48.8566, 2.3522) == pytest.approx(877_500, rel=2e-3)
    assert haversine_m(*BERLIN, *moved(*BERLIN, east_m=3)) == pytest.approx(3, rel=1e-3)
    assert haversine_m(0, 179.9999, 0, -179.9999) == pytest.approx(22.2, rel=1e-2)  # across the antimeridian


def test_sightings_3_m_apart_merge_and_100_m_apart_do_not() -> None:
    near = moved(*BERLIN, north_m=3)
    far = moved(*BERLIN, east_m=100)
    signs = merge([sighting(*BERLIN, "a"), sighting(*near, "b", 5), sighting(*far, "c", 10)], within_m=15)
    assert [len(s.sightings) for s in signs] == [2, 1]
    merged, alone = signs
    assert merged.sources == ["a", "b"] and alone.sources == ["c"]
    assert merged.first_seen == T0 and merged.last_seen == T0 + timedelta(minutes=5)
    # The point is the mean of the sightings: 1.5 m from each.
    assert haversine_m(merged.lat, merged.lon, *BERLIN) == pytest.approx(1.5, abs=0.01)
    assert (alone.lat, alone.lon) == pytest.approx(far)


def test_only_the_same_class_and_text_merge() -> None:
    signs = merge(
        [
            sighting(*BERLIN, "a"),
            sighting(*BERLIN, "b", text="5O"),  # another reading: another sign
            sighting(*BERLIN, "c", class_id=14, text="STOP"),
            sighting(*BERLIN, "d", class_id=None, text=""),  # open-set: by class name
            sighting(*BERLIN, "e", class_id=None, text=""),
            sighting(*BERLIN, "f", text=" 50 "),  # the same text, spaces aside
        ],
        within_m=15,
    )
    assert sorted(s.sources for s in signs) == [["a", "f"], ["b"], ["c"], ["d", "e"]]


def test_a_sign_never_spans_more_than_twice_the_distance() -> None:
    """Sightings 10 m apart along a road: single linkage would make one sign 90 m long."""
    road = [sighting(*moved(*BERLIN, north_m=10 * i), f"p{i}", i) for i in range(10)]
    signs = merge(road, within_m=15)
    assert len(signs) == 5
    for sign in signs:
        assert all(haversine_m(sign.first.lat, sign.first.lon, s.lat, s.lon) <= 15 for s in sign.sightings)


def test_two_identical_signs_in_one_photo_stay_two() -> None:
    here, next_photo = BERLIN, moved(*BERLIN, north_m=4)
    signs = merge(
        [sighting(*here, "p1"), sighting(*here, "p1"), sighting(*next_photo, "p2", 1), sighting(*next_photo, "p2", 1)],
        within_m=15,
    )
    assert [s.sources for s in signs] == [["p1", "p2"], ["p1", "p2"]]


def test_merging_is_the_same_in_any_input_order() -> None:
    points = [sighting(*moved(*BERLIN, north_m=7 * (i % 5), east_m=40 * (i // 5)), f"p{i}", i) for i in range(20)]
    once = [(s.sources, s.lat, s.lon) for s in merge(points, 15)]
    assert once == [(s.sources, s.lat, s.lon) for s in merge(list(reversed(points)), 15)]


def _full_search(points: list[Sighting], within_m: float) -> list[list[str]]:
    """The same leader clustering, every sign compared with every sighting."""
    signs: list[list[Sighting]] = []
    for s in sorted(points, key=lambda s: (s.seen_at, s.source)):
        near = [
            (haversine_m(g[0].lat, g[0].lon, s.lat, s.lon), i)
            for i, g in enumerate(signs)
            if (g[0].class_id, g[0].class_name, g[0].text) == (s.class_id, s.class_name, s.text)
            and all(o.source != s.source for o in g)
        ]
        metres, best = min(near, default=(math.inf, -1))
        if metres <= within_m:
            signs[best].append(s)
        else:
            signs.append([s])
    return [[s.source for s in g] for g in signs]


@pytest.mark.parametrize(
    ("lat0", "lon0", "within"), [(52.5, 13.4, 15), (89.999, 0.0, 15), (0.0, 179.9999, 30), (-33.9, 151.2, 0)]
)
def test_grid_search_agrees_with_a_full_search(lat0: float, lon0: float, within: float) -> None:
    """The grid only narrows the search: in a city, near the pole, across the antimeridian."""
    rng = random.Random(7)
    points = []
    for i in range(300):
        lat, lon = moved(lat0, lon0, rng.uniform(-60, 60), rng.uniform(-60, 60))
        points.append(sighting(lat, (lon + 180) % 360 - 180, f"p{i}", i, class_id=rng.choice((1, 2))))
    signs = merge(points, within)
    assert [s.sources for s in signs] == _full_search(points, within)
    assert 1 < len(signs) < 300 or within == 0


def test_mean_longitude_across_the_antimeridian() -> None:
    (sign,) = merge([sighting(10.0, 179.99995, "a"), sighting(10.0, -179.99995, "b")], within_m=15)
    assert abs(sign.lon) == pytest.approx(180.0)


def test_bbox_parsing_and_containment() -> None:
    box = BBox.parse("13.30,52.45,13.50,52.56")
    assert box.contains(52.5, 13.4) and not box.contains(52.5, 13.6) and not box.contains(52.6, 13.4)
    across = BBox.parse("179,-1,-179,1")
    assert across.contains(0, 179.5) and across.contains(0, -179.5) and not across.contains(0, 0)
    for bad, message in (
        ("1,2,3", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("nan,0,1,1", "finite"),
        ("0,0,200,1", "longitudes"),
        ("0,10,1,5", "latitudes"),
        ("0,-91,1,1", "latitudes"),
    ):
        with pytest.raises(ValueError, match=message):
            BBox.parse(bad)


def test_widened_bbox_holds_every_point_within_the_margin() -> None:
    box = BBox.parse("13.30,52.45,13.50,52.56")
    wide = box.widened(30)
    assert wide.contains(*moved(52.45, 13.30, north_m=-29, east_m=-29))
    assert not wide.contains(*moved(52.45, 13.30, north_m=-40))
    across = BBox.parse("179.9999,0,180,1").widened(30)
    assert across.min_lon > across.max_lon and across.contains(0.5, -179.9999)
    assert BBox.parse("0,89.99,1,90").widened(30).min_lon == -180.0


def test_geojson_and_csv() -> None:
    signs = merge([sighting(*BERLIN, "job-1"), sighting(*moved(*BERLIN, north_m=3), "job-2", 5)], 15)
    collection = feature_collection(signs)
    assert collection["type"] == "FeatureCollection"
    (feature,) = collection["features"]
    assert feature["geometry"]["type"] == "Point"
    lon, lat = feature["geometry"]["coordinates"]
    assert (lat, lon) == pytest.approx(moved(*BERLIN, north_m=1.5), abs=1e-7)
    assert feature["properties"] == {
        "class_id": 2,
        "class_name": "speed limit 50",
        "text": "50",
        "sightings": 2,
        "first_seen": "2026-05-01T12:00:00Z",
        "last_seen": "2026-05-01T12:05:00Z",
        "job_ids": ["job-1", "job-2"],
    }
    rows = list(csv.DictReader(io.StringIO(to_csv(signs))))
    assert rows == [
        {
            "lat": str(lat),
            "lon": str(lon),
            "class_id": "2",
            "class_name": "speed limit 50",
            "text": "50",
            "sightings": "2",
            "first_seen": "2026-05-01T12:00:00Z",
            "last_seen": "2026-05-01T12:05:00Z",
            "job_ids": "job-1 job-2",
        }
    ]
    # A reading that starts like a spreadsheet formula is quoted.
    formula = merge([sighting(*BERLIN, "j", class_id=None, text="=HYPERLINK(1)")], 15)
    assert list(csv.DictReader(io.StringIO(to_csv(formula, sources_as="files"))))[0]["text"] == "'=HYPERLINK(1)"
