#!/usr/bin/env python3
"""Screenshots of the web UI for the README (docs/screenshots/ui-*.png), taken in headless Chromium.

    python scripts/ui_screenshots.py                        # a tiny random model: the pixels are noise
    python scripts/ui_screenshots.py --weights FlashVSR-v1.1 --device cuda   # a real model

Runs the real ``flashvsr ui`` server, uploads a clip with audio and a photo from ../shared/data,
and captures: the inputs with their properties and output sizes, a running job with progress,
the results with the before/after comparison, and an upload error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import DATA, tiny_models
from tests.ui_helpers import ServerProcess, launch_chromium

OUT = REPO / "docs" / "screenshots"
CLIP = DATA / "lq" / "TrackAnything_test-sample2.mp4"
PHOTO = DATA / "images" / "scikit-image" / "chelsea.png"
VIEWPORT = {"width": 1360, "height": 940}
SCALE = "1.5"
JOB_TIMEOUT_MS = 600_000
RUNNING_FRAMES = 40  # take the "running" shot once this many frames are done
CROP_AT = (0.3, 0.62)  # where the zoomed crop looks (fractions of the picture): the kitten's eye
SEEK_FRAME = 60
VIDEOS_READY = "[...document.querySelectorAll('#stage video')].every(v => v.readyState >= 2 && !v.seeking)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="model folder (default: a tiny random model made on the spot)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for path in (CLIP, PHOTO):
        if not path.exists():
            sys.exit(f"{path} is missing (the screenshots use ../shared/data)")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or _tiny_model(Path(tmp))
        server = ServerProcess(Path(tmp) / "server.log", "--weights", str(weights), "--device", args.device)
        try:
            _capture(server.url, Path(tmp))
        finally:
            server.stop()


def _tiny_model(folder: Path) -> Path:
    from flashvsr.weights.loading import save_model

    return save_model(tiny_models(), folder / "tiny-test-model")


def _capture(url: str, tmp: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        _inputs(page)
        _running(page)
        _results(page)
        _error(page, tmp)
        browser.close()


def _inputs(page) -> None:
    page.set_input_files("#file-input", [str(CLIP), str(PHOTO)])
    page.locator(".upload .plan", has_text="→").nth(1).wait_for()
    page.fill("#scale", SCALE)
    page.locator(".upload .plan", has_text="× 480").first.wait_for()
    _shot(page, "ui-inputs.png")


def _running(page) -> None:
    page.click("#start")
    page.locator(".job.running .job-progress", has_text="fps").wait_for(timeout=JOB_TIMEOUT_MS)
    page.wait_for_function(
        f"[...document.querySelectorAll('.job.running .job-progress')].some(e => parseInt(e.textContent) >= {RUNNING_FRAMES})",
        timeout=JOB_TIMEOUT_MS,
    )
    _shot(page, "ui-running.png")


def _results(page) -> None:
    page.locator(".job.done").nth(1).wait_for(timeout=JOB_TIMEOUT_MS)
    page.locator(".job", has_text=CLIP.name).locator(".compare-button").click()
    page.wait_for_function(VIDEOS_READY)
    page.locator("#stage").scroll_into_view_if_needed()  # clicks land only inside the viewport
    stage = page.locator("#stage").bounding_box()
    page.mouse.click(stage["x"] + stage["width"] * CROP_AT[0], stage["y"] + stage["height"] * CROP_AT[1])
    page.evaluate(
        "frame => { const seek = document.querySelector('#seek'); seek.value = frame;"
        " seek.dispatchEvent(new Event('input')); }",
        SEEK_FRAME,
    )
    page.wait_for_function(VIDEOS_READY)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky settings card sits at the top of a full-page shot
    _shot(page, "ui-results.png")


def _error(page, tmp: Path) -> None:
    notes = tmp / "holiday-notes.txt"
    notes.write_text("not a video\n")
    page.evaluate("window.scrollTo(0, 0)")
    page.set_input_files("#file-input", str(notes))
    page.locator("#upload-error").wait_for()
    _shot(page, "ui-error.png", full_page=False)


def _shot(page, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(OUT / name), full_page=full_page)
    print(OUT / name)


if __name__ == "__main__":
    main()
