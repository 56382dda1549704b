"""Geolocation and the sign inventory, against the real gateway, workers and Postgres, and the
CLI's `roadsigns inventory` without any server.

The sample photo 00330.jpg (a speed limit 50, read "50") is sent three times, geotagged with
Pillow (tests/geotag.py, the pixels untouched): at a point A, 3 m north of A, and 100 m east of
A. The first two are one physical sign, the third another.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from roadsigns.shared.inventory import haversine_m
from tests.conftest import PHOTOS, wait_for_job
from tests.geotag import geotag, moved
from tests.stack import Stack, extra_gateway

PHOTO = (PHOTOS / "00330.jpg").read_bytes()
SPEED_LIMIT_50 = 2
A = (52.516275, 13.377704)
NEAR = moved(*A, north_m=3)
FAR = moved(*A, east_m=100)
AROUND = "13.376,52.515,13.381,52.518"  # minlon,minlat,maxlon,maxlat: A, NEAR and FAR
T_A = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
T_NEAR = datetime(2026, 5, 1, 12, 0, 5, tzinfo=UTC)
ROADSIGNS = str(Path(sys.executable).parent / "roadsigns")


def _post(client: httpx.Client, data: bytes, name: str = "p.jpg") -> str:
    response = client.post("/jobs", files={"file": (name, data, "image/jpeg")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def located(client: httpx.Client) -> dict[str, dict]:
    """Three geotagged jobs, done: at A (with altitude, heading and GPS time), 3 m from A, 100 m from A."""
    ids = {
        "a": _post(client, geotag(PHOTO, *A, altitude_m=34.5, heading_deg=270.25, taken_at=T_A)),
        "near": _post(client, geotag(PHOTO, *NEAR, taken_at=T_NEAR)),
        "far": _post(client, geotag(PHOTO, *FAR)),
    }
    jobs = {name: wait_for_job(client, job_id) for name, job_id in ids.items()}
    for job in jobs.values():
        assert job["status"] == "done", job
        assert any(s["class_id"] == SPEED_LIMIT_50 and s["text"] == "50" for s in job["signs"]), job["signs"]
    return jobs


def _speed_limits(collection: dict) -> list[dict]:
    return [f for f in collection["features"] if f["properties"]["class_id"] == SPEED_LIMIT_50]


def test_a_geotagged_photos_location_is_on_the_job_and_its_signs(client: httpx.Client, located: dict) -> None:
    job = located["a"]
    where = {"lat": A[0], "lon": A[1], "altitude_m": 34.5, "heading_deg": 270.25}
    assert job["location"] == where
    assert job["signs"] and all(s["location"] == where for s in job["signs"])
    assert located["far"]["location"] == {
        "lat": round(FAR[0], 7),
        "lon": round(FAR[1], 7),
        "altitude_m": None,
        "heading_deg": None,
    }
    # The list shows it too; a photo without GPS has none.
    listed = {j["id"]: j for j in client.get("/jobs", params={"limit": 100}).json()["items"]}
    assert listed[job["id"]]["location"] == where
    plain = wait_for_job(client, _post(client, PHOTO))
    assert plain["location"] is None and all(s["location"] is None for s in plain["signs"])


def test_sightings_3_m_apart_merge_and_100_m_apart_do_not(client: httpx.Client, located: dict) -> None:
    response = client.get("/inventory", params={"bbox": AROUND, "class_id": SPEED_LIMIT_50})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    features = sorted(collection["features"], key=lambda f: -f["properties"]["sightings"])
    assert [f["properties"]["sightings"] for f in features] == [2, 1], features
    merged, alone = features
    assert merged["properties"] == {
        "class_id": SPEED_LIMIT_50,
        "class_name": "speed limit 50",
        "text": "50",
        "sightings": 2,
        "first_seen": "2026-05-01T12:00:00Z",  # when taken, by the photos' GPS clock
        "last_seen": "2026-05-01T12:00:05Z",
        "job_ids": [located["a"]["id"], located["near"]["id"]],
    }
    assert merged["geometry"]["type"] == "Point"
    lon, lat = merged["geometry"]["coordinates"]
    assert haversine_m(lat, lon, *moved(*A, north_m=1.5)) < 0.05  # the mean of the two sightings
    lon, lat = alone["geometry"]["coordinates"]
    assert haversine_m(lat, lon, *FAR) < 0.05
    assert alone["properties"]["job_ids"] == [located["far"]["id"]]
    # Without a GPS clock, a sighting's time is the upload's.
    assert alone["properties"]["first_seen"] == located["far"]["created_at"].replace("+00:00", "Z")

    # Every sign of the photo is in the inventory, merged the same way.
    everything = client.get("/inventory", params={"bbox": AROUND}).json()["features"]
    kinds = {(s["class_id"], s["class_name"], s["text"]) for s in located["a"]["signs"]}
    assert len(everything) >= len(kinds) and _speed_limits({"features": everything}) == features


def test_filters(client: httpx.Client, located: dict) -> None:
    def speed_limits(**params: str) -> list[dict]:
        response = client.get("/inventory", params={"class_id": SPEED_LIMIT_50, **params})
        assert response.status_code == 200, response.text
        return response.json()["features"]

    assert len(speed_limits(bbox=AROUND)) == 2
    assert [f["properties"]["sightings"] for f in speed_limits(bbox="13.376,52.515,13.378,52.518")] == [2]
    assert speed_limits(bbox="-10,-10,-9,-9") == []
    assert speed_limits(bbox=AROUND, class_id="14") == []
    # since: signs last seen at or after it (the far one was uploaded just now; the merged one seen 12:00:05).
    assert len(speed_limits(bbox=AROUND, since="2026-05-01T12:00:03Z")) == 2
    assert len(speed_limits(bbox=AROUND, since="2026-05-01T12:00:06+00:00")) == 1
    assert speed_limits(bbox=AROUND, since="2099-01-01T00:00:00") == []


def test_the_csv_holds_the_same_signs(client: httpx.Client, located: dict) -> None:
    features = client.get("/inventory", params={"bbox": AROUND}).json()["features"]
    response = client.get("/inventory.csv", params={"bbox": AROUND})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "lat",
        "lon",
        "class_id",
        "class_name",
        "text",
        "sightings",
        "first_seen",
        "last_seen",
        "job_ids",
    ]
    assert len(rows) == len(features)
    for row, feature in zip(rows, features, strict=True):
        props = feature["properties"]
        assert [float(row["lon"]), float(row["lat"])] == feature["geometry"]["coordinates"]
        assert row["job_ids"].split() == props["job_ids"] and int(row["sightings"]) == props["sightings"]
        assert (row["class_name"], row["text"]) == (props["class_name"], props["text"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bbox": "1,2,3"}, "bbox: bbox must be four numbers"),
        ({"bbox": "a,b,c,d"}, "bbox: bbox must be four numbers"),
        ({"bbox": "0,10,1,5"}, "latitudes"),
        ({"bbox": "0,0,181,1"}, "longitudes"),
        ({"bbox": "nan,0,1,1"}, "finite"),
        ({"class_id": "-1"}, "class_id"),
        ({"class_id": "speed"}, "class_id"),
        ({"since": "yesterday"}, "since"),
    ],
)
@pytest.mark.parametrize("path", ["/inventory", "/inventory.csv"])
def test_bad_filters_are_422(client: httpx.Client, path: str, params: dict, message: str) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_another_tenants_inventory_does_not_include_them(stack: Stack, client: httpx.Client, located: dict) -> None:
    with extra_gateway(stack, ROADSIGNS_API_KEYS="alpha:alpha-key, beta:beta-key") as (base, _pid):
        with (
            httpx.Client(base_url=base, headers={"X-API-Key": "alpha-key"}, timeout=30) as alpha,
            httpx.Client(base_url=base, headers={"X-API-Key": "beta-key"}, timeout=30) as beta,
        ):
            theirs = wait_for_job(alpha, _post(alpha, geotag(PHOTO, *A)))
            assert theirs["status"] == "done" and theirs["location"]["lat"] == A[0]
            mine = {j["id"] for j in located.values()}

            alphas = alpha.get("/inventory", params={"bbox": AROUND}).json()["features"]
            assert {i for f in alphas for i in f["properties"]["job_ids"]} == {theirs["id"]}
            assert [f["properties"]["sightings"] for f in _speed_limits({"features": alphas})] == [1]
            assert beta.get("/inventory").json() == {"type": "FeatureCollection", "features": []}
            assert beta.get("/inventory.csv").text.count("\n") == 1  # the header alone
            assert alpha.get("/inventory").status_code == 200 and httpx.get(f"{base}/inventory").status_code == 401

    defaults = client.get("/inventory", params={"bbox": AROUND}).json()["features"]
    seen = {i for f in defaults for i in f["properties"]["job_ids"]}
    assert seen and seen <= mine and theirs["id"] not in seen


# -- the CLI, without any server ------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROADSIGNS, *args, "--quiet"], capture_output=True, text=True, timeout=600)


def test_cli_analyze_and_inventory(tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    photos.mkdir()
    (photos / "1_a.jpg").write_bytes(geotag(PHOTO, *A, taken_at=T_A))
    (photos / "2_near.jpg").write_bytes(geotag(PHOTO, *NEAR, taken_at=T_NEAR))
    (photos / "3_far.jpg").write_bytes(geotag(PHOTO, *FAR, taken_at=T_NEAR))
    (photos / "4_no_gps.jpg").write_bytes((PHOTOS / "00121.jpg").read_bytes())

    out = _run("analyze", str(photos / "1_a.jpg"), str(photos / "4_no_gps.jpg"))
    assert out.returncode == 0, out.stderr
    tagged, plain = json.loads(out.stdout)
    assert tagged["location"] == {"lat": A[0], "lon": A[1]}
    assert tagged["signs"] and all(s["location"] == tagged["location"] for s in tagged["signs"])
    assert plain["location"] is None

    out = _run("inventory", str(photos), "-o", str(tmp_path / "signs.geojson"))
    assert out.returncode == 0, out.stderr
    assert "without GPS skipped" in out.stderr
    collection = json.loads((tmp_path / "signs.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    features = sorted(_speed_limits(collection), key=lambda f: -f["properties"]["sightings"])
    assert [f["properties"]["sightings"] for f in features] == [2, 1]
    assert [Path(p).name for p in features[0]["properties"]["files"]] == ["1_a.jpg", "2_near.jpg"]
    assert features[0]["properties"]["first_seen"] == "2026-05-01T12:00:00Z"
    lon, lat = features[0]["geometry"]["coordinates"]
    assert haversine_m(lat, lon, *moved(*A, north_m=1.5)) < 0.05
    files = {Path(p).name for f in collection["features"] for p in f["properties"]["files"]}
    assert "4_no_gps.jpg" not in files

    none = tmp_path / "plain"
    none.mkdir()
    (none / "x.jpg").write_bytes(PHOTO)
    out = _run("inventory", str(none))
    assert out.returncode == 2 and "EXIF GPS" in out.stderr
