"""The web UI in a real browser: headless Chromium (Debian's) drives the real ``flashvsr ui`` server.

A user uploads a real clip with audio, sees its properties and the output size, runs a job
with live progress, downloads the result and compares before/after; cancels a running job and
runs another; uploads a file that is not a video and reads why; opens the page with no model.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web UI extra is not installed: pip install -e '.[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")

import uvicorn

from flashvsr.io import probe
from flashvsr.ui.app import create_app
from flashvsr.ui.config import UIConfig
from flashvsr.ui.server import bind, uvicorn_config

from .conftest import DATA, require
from .media_helpers import video_timestamps, write_video
from .ui_helpers import ServerProcess, api, launch_chromium

pytest_plugins = ["tests.media_fixtures"]  # fixtures: weights_dir

CLIP_WITH_AUDIO = DATA / "lq" / "TrackAnything_test-sample2.mp4"  # 568×320, 149 frames, AAC
SCALE = "1.125"  # 640×360 out, the same 640×384 model frame as ×1: the cheapest real upscale
JOB_TIMEOUT_MS = 240_000
UI_TIMEOUT_MS = 20_000
LONG_FRAMES = 600  # long enough that a cancel always lands while it runs
SYNC_TOLERANCE_S = 0.2  # the player re-seeks "before" past 0.06 s of drift; allow a slow CI frame
sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)  # expect's own default (5 s) is too short on 2 busy CI cores


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except (sync_api.Error, OSError) as e:  # no binary, no sandbox, missing libraries: a skip
            pytest.skip(f"Chromium cannot be launched here: {type(e).__name__}: {str(e).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights_dir):
    """The real command, as a user starts it; stopped with Ctrl-C, which must remove its files."""
    tmp = tmp_path_factory.mktemp("ui-server")
    process = ServerProcess(tmp / "server.log", "--weights", str(weights_dir), "--threads", "1",
                            "--temp-dir", str(tmp / "tmp"))  # fmt: skip
    yield process
    assert process.stop() == 0, process.log.read_text()
    assert list((tmp / "tmp").iterdir()) == []  # uploads and outputs are gone


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1360, "height": 940})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == []  # no script error anywhere on the way


def job_card(page, input_name: str):
    return page.locator(".job", has_text=input_name).first


def download(page, card, folder: Path) -> Path:
    with page.expect_download() as started:
        card.locator("a.download").click()
    saved = folder / started.value.suggested_filename
    started.value.save_as(saved)
    return saved


def test_upload_run_download_and_compare_a_real_clip(page, server, tmp_path):
    clip = require(CLIP_WITH_AUDIO)
    page.goto(server.url)
    page.set_input_files("#file-input", str(clip))
    upload = page.locator(".upload", has_text=clip.name)
    props = upload.locator(".props")
    for shown in ("568 × 320", "149", "29.56 fps", "5.04 s", "AAC · 44.1 kHz · mono", "Video · H264"):
        sync_api.expect(props).to_contain_text(shown)
    page.fill("#scale", SCALE)
    sync_api.expect(upload.locator(".plan")).to_have_text(
        "→ 640 × 360 · 149 frames · TrackAnything_test-sample2_x1.125.mp4"
    )

    page.click("#start")
    card = job_card(page, clip.name)
    progress = card.locator(".job-progress")
    live = re.compile(r"^\d+ / 149 frames · \d+\.\d fps · \d+:\d\d left$")  # frames, speed, time left
    sync_api.expect(progress).to_have_text(live, timeout=JOB_TIMEOUT_MS)
    sync_api.expect(card.locator(".badge")).to_have_text("Done", timeout=JOB_TIMEOUT_MS)
    sync_api.expect(progress).to_contain_text("149 frames in")

    saved = download(page, card, tmp_path)
    info = probe(saved)
    assert saved.name == "TrackAnything_test-sample2_x1.125.mp4"
    assert (info.frames, info.width, info.height) == (149, 640, 360)
    assert [a.codec for a in info.audio] == ["aac"]
    assert video_timestamps(saved) == video_timestamps(clip)  # every frame keeps its time

    check_comparison(page)


def check_comparison(page):
    """The finished job opens a before/after player: both videos load, play in step, and the
    zoomed crops show the same region of each."""
    sync_api.expect(page.locator("#compare-card")).to_be_visible()
    page.wait_for_function("[...document.querySelectorAll('#stage video')].every(v => v.readyState >= 2)")
    sizes = page.evaluate("[...document.querySelectorAll('#stage video')].map(v => [v.videoWidth, v.videoHeight])")
    assert sorted(sizes) == [[568, 320], [640, 360]]
    page.click("#play")
    page.wait_for_function("document.querySelector('#after-pane video').currentTime > 0.5")
    page.click("#play")  # pause: both stop on the same frame
    drift = page.evaluate(
        "Math.abs(document.querySelector('#after-pane video').currentTime"
        " - document.querySelector('#before-pane video').currentTime)"
    )
    assert drift < SYNC_TOLERANCE_S
    page.locator("#stage").scroll_into_view_if_needed()
    stage = page.locator("#stage").bounding_box()
    page.mouse.click(stage["x"] + stage["width"] * 0.25, stage["y"] + stage["height"] * 0.5)
    page.wait_for_function("document.querySelector('#crop-box').style.left !== ''")
    box = page.evaluate("['left', 'top', 'width'].map(k => parseFloat(document.querySelector('#crop-box').style[k]))")
    assert box == pytest.approx([20, 41.1, 10], abs=0.5)  # 64 output pixels (256 / 4× zoom) around (160, 180)
    for canvas in ("#crop-before", "#crop-after"):
        opaque = page.evaluate(
            f"(() => {{ const c = document.querySelector('{canvas}');"
            f" const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            f" let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] === 255; return n / (d.length / 4); }})()"
        )
        assert opaque == 1.0  # the whole crop is drawn
    page.click("#mode-side")
    assert "side" in page.get_attribute("#stage", "class")


def test_cancel_a_running_job_then_run_another(page, server, tmp_path):
    long_clip = write_video(tmp_path / "long-take.mp4", LONG_FRAMES, 64, 48)
    short_clip = write_video(tmp_path / "short-take.mp4", 12, 48, 32, audio="aac")
    page.goto(server.url)
    page.set_input_files("#file-input", str(long_clip))
    sync_api.expect(page.locator(".upload", has_text="long-take.mp4").locator(".plan")).to_contain_text("→")
    page.fill("#scale", "2")
    page.click("#start")

    card = job_card(page, "long-take.mp4")
    sync_api.expect(card.locator(".job-progress")).to_have_text(
        re.compile(rf"^[1-9]\d* / {LONG_FRAMES} frames"), timeout=JOB_TIMEOUT_MS
    )  # running, with frames done
    card.locator("button.cancel").click()
    sync_api.expect(card.locator(".badge")).to_have_text("Cancelled")
    sync_api.expect(card.locator(".job-progress")).to_contain_text("nothing was kept")
    sync_api.expect(card.locator("a.download")).to_be_hidden()
    job_id = card.get_attribute("data-job-id")
    status, job = api(server.url, "GET", f"/api/jobs/{job_id}")
    assert status == 200 and job["state"] == "cancelled" and 0 < job["progress"]["done"] < LONG_FRAMES
    assert list((server.temp_folder() / "jobs" / job_id).iterdir()) == []  # no partial output left

    page.locator(".upload", has_text="long-take.mp4").locator("button.remove").click()
    sync_api.expect(page.locator(".upload", has_text="long-take.mp4")).to_have_count(0)
    page.set_input_files("#file-input", str(short_clip))
    sync_api.expect(page.locator(".upload", has_text="short-take.mp4").locator(".plan")).to_contain_text("96 × 64")
    page.click("#start")
    next_card = job_card(page, "short-take.mp4")
    sync_api.expect(next_card.locator(".badge")).to_have_text("Done", timeout=JOB_TIMEOUT_MS)
    sync_api.expect(next_card.locator(".job-detail")).to_contain_text("model already loaded")
    info = probe(download(page, next_card, tmp_path))
    assert (info.frames, info.width, info.height, len(info.audio)) == (12, 96, 64, 1)


def test_a_file_that_is_not_a_video_shows_why(page, server, tmp_path):
    notes = tmp_path / "holiday-notes.txt"
    notes.write_text("sunscreen, hat, camera\n")
    page.goto(server.url)
    page.set_input_files("#file-input", str(notes))
    error = page.locator("#upload-error")
    sync_api.expect(error).to_be_visible()
    sync_api.expect(error).to_have_text(
        "holiday-notes.txt: not a video or image FFmpeg can read (Invalid data found when processing input)"
    )
    sync_api.expect(page.locator(".upload", has_text="holiday-notes.txt")).to_have_count(0)


def test_files_chosen_before_the_server_answers_are_not_lost(page, server, tmp_path):
    """A busy server answers the page's first request late; files chosen meanwhile wait for it."""
    clip = write_video(tmp_path / "early-pick.mp4", 6, 48, 32)
    held = []
    page.route("**/api/info", lambda route: held.append(route))  # answered when the test lets it through
    page.goto(server.url)
    page.set_input_files("#file-input", str(clip))
    assert len(held) == 1
    held[0].continue_()
    upload = page.locator(".upload", has_text="early-pick.mp4")
    sync_api.expect(upload.first.locator(".props")).to_contain_text("48 × 32")
    sync_api.expect(upload).to_have_count(1)  # once, though the page's start-up also lists the server's uploads


def test_the_page_says_when_no_model_is_available(page, monkeypatch, tmp_path):
    """No --weights and no bundled model: the page says what to do, and starting says it again."""
    monkeypatch.setattr("flashvsr.ui.models.BUNDLED_DIR", tmp_path / "not-installed")
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(create_app(UIConfig(temp_parent=tmp_path))))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        banner = page.locator("#no-model")
        sync_api.expect(banner).to_contain_text("No model folder is available")
        sync_api.expect(banner).to_contain_text("flashvsr ui --weights FOLDER")
        assert page.input_value("#weights") == "__other__" and page.is_visible("#weights-custom")
        page.set_input_files("#file-input", str(write_video(tmp_path / "clip.mp4", 4, 32, 32)))
        sync_api.expect(page.locator(".upload .plan")).to_contain_text("→ 128 × 128")  # sizes need no model
        page.click("#start")
        sync_api.expect(page.locator("#settings-error")).to_contain_text("No model folder is available")
    finally:
        page.close()  # its open connections would hold the server's shutdown
        server.should_exit = True
        thread.join(30)
        sock.close()
