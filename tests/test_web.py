"""The web page at GET /, in real headless Chromium against the real gateway and workers.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` Python package; Playwright's
own browser download is not used. Set ROADSIGNS_SCREENSHOTS=docs/screenshots to refresh the
README's screenshots while the tests run.
"""

from __future__ import annotations

import io
import math
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import text

from tests.conftest import PHOTOS, wait_for_job
from tests.stack import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
JOB_TIMEOUT_MS = 240_000
STATUS_ORDER = ["waiting", "uploading", "queued", "detecting", "reading", "done"]

# Records every status each job card shows, so a test can check the page followed the job.
RECORD_STATUSES = """
window.__statuses = {};
new MutationObserver((records) => {
  for (const r of records) {
    const title = r.target.querySelector && r.target.querySelector('.job-title');
    if (!title) continue;
    const seen = (window.__statuses[title.textContent] ||= []);
    const status = r.target.getAttribute('data-status');
    if (seen[seen.length - 1] !== status) seen.push(status);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-status'] });
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, stack: Stack, **context_options) -> tuple[Page, list[str], list[str]]:  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=stack.gateway_url, **context_options)
    context.add_init_script(RECORD_STATUSES)
    page = context.new_page()
    # Intercept file choosers from the start: turning interception on only inside
    # expect_file_chooser() races the key press that opens one (about 1 run in 8 saw none).
    page.on("filechooser", lambda chooser: None)
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    return page, errors, requests


@pytest.fixture
def desktop(browser: Browser, stack: Stack) -> Iterator[Page]:
    page, errors, requests = open_page(browser, stack, viewport=DESKTOP)
    yield page
    page.context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    outside = [u for u in requests if not u.startswith((stack.gateway_url, "data:", "blob:"))]
    assert not outside, f"the page fetched something from outside the gateway: {outside}"


@pytest.fixture
def phone(browser: Browser, stack: Stack) -> Iterator[Page]:
    page, errors, _ = open_page(browser, stack, viewport=PHONE, is_mobile=True, has_touch=True)
    yield page
    page.context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def submit(client: httpx.Client, name: str) -> dict:
    with open(PHOTOS / name, "rb") as f:
        response = client.post("/jobs", files={"file": (name, f, "image/jpeg")})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "done", job
    return job


def as_percent(x: float) -> str:
    return f"{math.floor(x * 100 + 0.5)}%"  # JavaScript's Math.round, not Python's banker's rounding


def screenshot(page: Page, name: str, full_page: bool = False) -> None:
    """Into $ROADSIGNS_SCREENSHOTS when set, as a 256-colour PNG so the README stays light."""
    folder = os.environ.get("ROADSIGNS_SCREENSHOTS")
    if not folder:
        return
    image = Image.open(io.BytesIO(page.screenshot(full_page=full_page))).convert("RGB")
    Path(folder).mkdir(parents=True, exist_ok=True)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(Path(folder) / name, optimize=True)


def card_for(page: Page, job_id: str) -> Locator:
    return page.locator(f'#job-list > li[data-job-id="{job_id}"]')


def wait_images(card: Locator) -> None:
    card.page.wait_for_function(
        "card => [...card.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)",
        arg=card.element_handle(),
    )


def assert_drawn_as_the_api_says(card: Locator, job: dict) -> None:
    """Every sign of the API's answer is a box at its place on the photo, labelled and listed."""
    expect(card).to_have_attribute("data-status", "done")
    wait_images(card)
    signs = job["signs"]
    photo = card.locator("img.photo-img")
    assert photo.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [job["image_width"], job["image_height"]]
    # Pictures load through the job's signed links: no API key in any URL on the page.
    src = photo.get_attribute("src") or ""
    assert src.startswith(f"/jobs/{job['id']}/image?expires=") and "&sig=" in src, src
    urls = card.evaluate("card => [...card.querySelectorAll('img, a')].map(e => e.src || e.href)")
    assert not [u for u in urls if "api_key" in u], urls
    boxes = card.locator(".boxes .box")
    expect(boxes).to_have_count(len(signs))
    # All rectangles in one go, so that no scrolling can happen between two measurements.
    drawn = card.evaluate(
        """card => {
            const rect = (e) => {
                const r = e.getBoundingClientRect();
                return { x: r.x, y: r.y, w: r.width, h: r.height };
            };
            return {
                photo: rect(card.querySelector('img.photo-img')),
                boxes: [...card.querySelectorAll('.boxes .box')].map(rect),
                labels: [...card.querySelectorAll('.boxes .box .box-label')].map(rect),
            };
        }"""
    )
    frame = drawn["photo"]
    sx, sy = frame["w"] / job["image_width"], frame["h"] / job["image_height"]
    assert sx == pytest.approx(sy, rel=0.01), "the photo is shown with its own aspect ratio"

    for i, sign in enumerate(signs):
        box = boxes.nth(i)
        # A sign outside the 43 classes (class_id null) carries no data-class-id.
        assert box.get_attribute("data-class-id") == (None if sign["class_id"] is None else str(sign["class_id"]))
        assert [float(v) for v in box.get_attribute("data-bbox").split(",")] == pytest.approx(sign["bbox"])
        x1, y1, x2, y2 = sign["bbox"]
        rect = drawn["boxes"][i]
        assert rect["x"] - frame["x"] == pytest.approx(x1 * sx, abs=1.5), (i, rect, frame, sign)
        assert rect["y"] - frame["y"] == pytest.approx(y1 * sy, abs=1.5), (i, rect, frame, sign)
        assert rect["w"] == pytest.approx((x2 - x1) * sx, abs=1.5), (i, rect, sign)
        assert rect["h"] == pytest.approx((y2 - y1) * sy, abs=1.5), (i, rect, sign)

        label = box.locator(".box-label")
        expect(label).to_be_visible()
        expect(label.locator(".box-n")).to_have_text(str(i + 1))
        expect(label).to_contain_text(sign["class_name"])
        expect(label).to_contain_text(as_percent(sign["confidence"]))
        if sign["text"]:
            expect(label).to_contain_text(sign["text"])

    # Every label is readable: inside the photo, and no two labels cover each other.
    labels = drawn["labels"]
    for i, a in enumerate(labels):
        assert frame["x"] - 0.5 <= a["x"] and a["x"] + a["w"] <= frame["x"] + frame["w"] + 0.5, (i, a, frame)
        assert frame["y"] - 0.5 <= a["y"] and a["y"] + a["h"] <= frame["y"] + frame["h"] + 0.5, (i, a, frame)
        for j, b in enumerate(labels[:i]):
            overlap_x = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            overlap_y = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            assert overlap_x <= 0.5 or overlap_y <= 0.5, f"labels {j + 1} and {i + 1} overlap"

    # The list of signs: same order, each with its crop and its reading.
    items = card.locator(".signs .sign")
    expect(items).to_have_count(len(signs))
    for i, sign in enumerate(signs):
        item = items.nth(i)
        assert item.get_attribute("data-class-id") == (None if sign["class_id"] is None else str(sign["class_id"]))
        expect(item).to_contain_text(sign["class_name"])
        expect(item).to_contain_text(sign["category"])
        if sign["crop_url"]:
            crop = item.locator("img.crop")
            # The same signed link as the API's (expiries are rounded, so both agree for minutes).
            assert crop.get_attribute("src") == sign["crop_url"] and "sig=" in sign["crop_url"]
            assert crop.evaluate("i => i.naturalWidth") > 0
        if sign["text"]:
            expect(item.locator(".sign-text q")).to_have_text(sign["text"])
        else:
            expect(item.locator(".sign-text")).to_have_text("No text read")

    # Per-stage timings, one row per stage the API reported.
    rows = card.locator(".timings .timing")
    expect(rows).to_have_count(len(job["timings_ms"]))
    for key in job["timings_ms"]:
        expect(card.locator(f'.timing[data-key="{key}"]')).to_be_visible()


def test_photos_chosen_by_keyboard_are_followed_and_drawn(desktop: Page, client: httpx.Client) -> None:
    page = desktop
    page.goto("/")
    expect(page).to_have_title(re.compile("roadsigns"))
    zone = page.get_by_role("button", name=re.compile("Choose photos"))
    expect(zone).to_be_visible()
    for _ in range(10):  # Tab from the top of the page reaches the drop zone
        if zone.evaluate("z => z === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(zone).to_be_focused()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    chooser.value.set_files([PHOTOS / "00224.jpg", PHOTOS / "00330.jpg"])

    cards = page.locator("#job-list > li")
    expect(cards).to_have_count(2)
    for name in ("00224.jpg", "00330.jpg"):
        card = cards.filter(has=page.locator(".job-title", has_text=name))
        expect(card).to_have_attribute("data-status", "done", timeout=JOB_TIMEOUT_MS)
        expect(card.get_by_role("status")).to_contain_text("Done")
        job = client.get(f"/jobs/{card.get_attribute('data-job-id')}").json()
        assert job["filename"] == name and job["status"] == "done"
        assert_drawn_as_the_api_says(card, job)
        if name == "00224.jpg":
            assert {s["class_id"] for s in job["signs"]} >= {1, 9, 28}  # three signs on one post
        # The page followed the job through its stages, in order, from the upload on.
        seen = page.evaluate("name => window.__statuses[name]", name)
        assert seen[-1] == "done" and "queued" in seen, seen
        assert [STATUS_ORDER.index(s) for s in seen] == sorted(STATUS_ORDER.index(s) for s in seen), seen
        # Its own link reopens it.
        assert card.locator("a.job-link").get_attribute("href") == f"#/jobs/{job['id']}"

    # Both new jobs are in the history, newest first.
    history = page.locator("#history-list > li")
    expect(history.first).to_contain_text(re.compile("00224.jpg|00330.jpg"))
    expect(page.locator("#history-list a", has_text="00224.jpg").first).to_be_visible()
    expect(page.locator("#history-list a", has_text="00330.jpg").first).to_be_visible()

    # A card can be closed; the other stays.
    page.get_by_role("button", name="Close 00330.jpg").click()
    expect(cards).to_have_count(1)
    expect(cards.first.locator(".job-title")).to_have_text("00224.jpg")
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "desktop.png", full_page=True)


def test_dropped_files_that_are_refused_show_the_apis_reason(desktop: Page, client: httpx.Client) -> None:
    page = desktop
    junk = b"hello, this is not a photo\n" * 20
    tiny = io.BytesIO()
    Image.new("RGB", (4, 4)).save(tiny, format="PNG")
    files = [("notes.jpg", junk, "image/jpeg"), ("tiny.png", tiny.getvalue(), "image/png")]
    details = {}
    for name, data, mime in files:
        response = client.post("/jobs", files={"file": (name, data, mime)})
        assert response.status_code in (415, 422), response.text
        details[name] = response.json()["detail"]

    page.goto("/")
    # Drag both onto the drop zone, as from a file manager.
    transfer = page.evaluate_handle(
        """files => {
            const dt = new DataTransfer();
            for (const [name, bytes, type] of files) dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
            return dt;
        }""",
        [[name, list(data), mime] for name, data, mime in files],
    )
    zone = page.locator("#dropzone")
    zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    expect(page.locator("body")).to_have_class(re.compile("dragging"))
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.locator("body")).not_to_have_class(re.compile("dragging"))

    for name, detail in details.items():
        card = page.locator("#job-list > li").filter(has=page.locator(".job-title", has_text=name))
        expect(card).to_have_attribute("data-status", "rejected")
        expect(card.get_by_role("alert")).to_contain_text(detail)
        expect(card.get_by_role("status")).to_have_text("Rejected")
        expect(card.locator(".job-result")).to_be_hidden()
        assert card.get_attribute("data-job-id") is None


def test_past_jobs_reopen_from_the_history_and_by_their_url(
    desktop: Page, browser: Browser, stack: Stack, client: httpx.Client, db
) -> None:  # type: ignore[no-untyped-def]
    page = desktop
    job = submit(client, "00260.jpg")
    # No real input makes a worker fail, so a failed job is written as the tracker would.
    failed_id = uuid.uuid4().hex
    error = "the detector gave up after 3 attempts: CUDA out of memory"
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, status, filename, content_type, blob_key, image_width, image_height, "
                "attempts, error, created_at, updated_at, finished_at) VALUES (:id, 'failed', 'broken.jpg', "
                "'image/jpeg', 'uploads/none.jpg', 1360, 800, 3, :error, now() - interval '1 hour', "
                "now() - interval '1 hour', now() - interval '1 hour')"
            ),
            {"id": failed_id, "error": error},
        )

    page.goto("/")
    link = page.locator(f'#history-list a[href="#/jobs/{job["id"]}"]')
    expect(link).to_contain_text("00260.jpg")
    expect(link).to_contain_text("done")
    link.click()
    expect(page).to_have_url(re.compile(f"#/jobs/{job['id']}$"))
    expect(link).to_have_attribute("aria-current", "page")
    card = card_for(page, job["id"])
    expect(card).to_have_class(re.compile("current"))
    assert_drawn_as_the_api_says(card, job)

    # A fresh tab on the job's own URL shows the same result, with no history clicks.
    other = page.context.new_page()
    other.goto(f"/#/jobs/{job['id']}")
    assert_drawn_as_the_api_says(card_for(other, job["id"]), job)
    other.goto(f"/?job={job['id']}")
    assert_drawn_as_the_api_says(card_for(other, job["id"]), job)
    other.close()

    # A failed job shows its error; an unknown id shows the API's 404 message.
    page.goto(f"/#/jobs/{failed_id}")
    failed = card_for(page, failed_id)
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.get_by_role("alert")).to_contain_text(error)
    expect(failed.locator('.steps li[data-state="failed"]')).to_have_count(1)
    expect(failed.locator(".job-result")).to_be_hidden()
    page.goto("/#/jobs/no-such-job")
    missing = card_for(page, "no-such-job")
    expect(missing).to_have_attribute("data-status", "missing")
    expect(missing.get_by_role("alert")).to_contain_text("no job with id 'no-such-job'")


def test_phone_width_fits_without_sideways_scrolling(phone: Page, client: httpx.Client) -> None:
    page = phone
    job = submit(client, "00224.jpg")
    page.goto(f"/#/jobs/{job['id']}")
    card = card_for(page, job["id"])
    assert_drawn_as_the_api_says(card, job)

    width = page.evaluate("document.documentElement.clientWidth")
    assert width == PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    sticking_out = page.evaluate(
        """() => [...document.querySelectorAll('body *:not(.skip)')]
            .filter(e => { const r = e.getBoundingClientRect();
                           return r.width > 0 && (r.left < -0.5 || r.right > innerWidth + 0.5); })
            .map(e => e.tagName + '.' + e.className)"""
    )
    assert not sticking_out, sticking_out
    zone = page.locator("#dropzone").bounding_box()
    assert zone is not None and zone["height"] >= 44, "the drop zone is a comfortable tap target"
    expect(page.locator("#history-list")).to_be_visible()
    card.scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "phone.png", full_page=True)


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second gateway, with API keys on and no workers: enough for the page's key form."""
    stack = Stack.create(tmp_path_factory.mktemp("keyed"), ROADSIGNS_API_KEYS='["web-test-key"]')
    try:
        stack.start_gateway()
        yield stack
    finally:
        stack.close()


def test_a_gateway_with_api_keys_gets_one_from_the_form(browser: Browser, keyed_gateway: Stack) -> None:
    page, errors, _ = open_page(browser, keyed_gateway, viewport=DESKTOP)
    page.goto("/")
    form = page.locator("#key-form")
    expect(form).to_be_visible()
    expect(form).to_contain_text("an API key is required")
    expect(page.locator("#history-status")).to_contain_text("an API key is required")

    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Use this key").click()
    expect(form).to_contain_text("this API key is not valid")

    page.get_by_label("API key").fill("web-test-key")
    page.get_by_label("API key").press("Enter")
    expect(form).to_be_hidden()
    expect(page.locator("#history-status")).to_have_text("No jobs yet.")

    # Uploads carry the key; with no workers here the job stays queued.
    page.set_input_files("#file-input", PHOTOS / "00330.jpg")
    card = page.locator("#job-list > li").first
    expect(card).to_have_attribute("data-status", "queued")
    job_id = card.get_attribute("data-job-id")
    with httpx.Client(base_url=keyed_gateway.gateway_url, headers={"X-API-Key": "web-test-key"}) as client:
        assert client.get(f"/jobs/{job_id}").json()["filename"] == "00330.jpg"

    # The key is remembered by this browser: a new visit needs no form.
    page.reload()
    expect(page.locator(f'#history-list a[href="#/jobs/{job_id}"]')).to_be_visible()
    expect(form).to_be_hidden()
    page.context.close()
    assert not errors, errors
