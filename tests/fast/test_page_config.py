"""The web page's map setting: ROADSIGNS_MAP_TILE_URL is checked when read, reaches the page through
GET /page-config, and adds its origin, and only that, to the Content-Security-Policy's img-src.
(tests/test_web.py shows the tiles drawn under the points in a real browser.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from roadsigns.gateway.app import create_app
from roadsigns.shared.settings import Settings

DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def page(settings: Settings) -> TestClient:
    """The gateway's app, unstarted: the page, its config and its headers need no database or broker."""
    return TestClient(create_app(settings))


def test_without_a_tile_url_the_page_gets_none_and_the_policy_is_unchanged() -> None:
    client = page(Settings(environment="test"))
    assert client.get("/page-config").json() == {"map_tile_url": None, "map_tile_attribution": ""}
    for path in ("/", "/page-config", "/static/inventory.js"):
        assert client.get(path).headers["content-security-policy"] == DEFAULT_CSP, path
    assert "page-config" not in str(client.get("/openapi.json").json()["paths"])  # the page's, not the API's


def test_a_tile_url_reaches_the_page_and_its_origin_only_img_src() -> None:
    url = "https://Tiles.Example.org:8443/osm/{z}/{x}/{y}.png?key=abc"
    client = page(Settings(environment="test", map_tile_url=f"  {url} ", map_tile_attribution="© OpenStreetMap"))
    assert client.get("/page-config").json() == {"map_tile_url": url, "map_tile_attribution": "© OpenStreetMap"}
    csp = client.get("/").headers["content-security-policy"]
    assert csp == DEFAULT_CSP.replace("blob:;", "blob: https://tiles.example.org:8443;")
    assert client.get("/docs").headers["content-security-policy"] == "frame-ancestors 'none'"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://tiles.example.org/{z}/{x}/{y}.png", "http(s) URL with a literal host"),
        ("tiles.example.org/{z}/{x}/{y}.png", "http(s) URL with a literal host"),
        ("https://{s}.tile.example.org/{z}/{x}/{y}.png", "http(s) URL with a literal host"),
        ("https://*.example.org/{z}/{x}/{y}.png", "http(s) URL with a literal host"),
        ("https://user:pw@example.org/{z}/{x}/{y}.png", "http(s) URL with a literal host"),
        ("https://a.org;script-src/{z}/{x}/{y}.png", "http(s) URL with a literal host"),
        ("https://tiles.example.org/{z}/{x}.png", "lacks {y}"),
        ("https://tiles.example.org/tile.png", "lacks {z}, {x}, {y}"),
    ],
)
def test_a_tile_url_that_is_not_a_template_on_one_host_is_refused(url: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        Settings(map_tile_url=url)


def test_an_empty_tile_url_is_none() -> None:
    assert Settings(map_tile_url="").map_tile_url is None
    assert Settings(map_tile_url="   ").map_tile_url is None
