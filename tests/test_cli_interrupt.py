"""The atomic-output guarantee on the real command: interrupt or kill ``flashvsr upscale``
mid-run and no file appears under the output name, and the input is untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from flashvsr.io import probe

from .media_helpers import file_digest, write_video

pytest_plugins = ["tests.media_fixtures"]  # fixtures: weights_dir

LONG_FRAMES = 3000  # far more than a run gets through before it is stopped
STARTUP_TIMEOUT = 120  # seconds for the command to import torch, load the model and start writing
BYTES_WRITTEN = 2000  # the partial file holds encoded frames, not just the header


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    return write_video(folder / "long.mp4", LONG_FRAMES, 32, 32, audio="aac")


def start_upscale(source, output, weights):
    command = [sys.executable, "-m", "flashvsr.cli", "upscale", str(source), "-o", str(output),
               "--weights", str(weights), "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def partials(folder):
    return [p for p in folder.iterdir() if ".partial-" in p.name]


def wait_until_writing(process, folder) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the command ended early: {process.stderr.read()}")
        found = partials(folder)
        if found and found[0].stat().st_size > BYTES_WRITTEN:
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail("the command did not start writing in time")


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_no_output_and_no_partial(tmp_path, long_clip, weights_dir, sig, exit_code):
    before = (file_digest(long_clip), long_clip.stat().st_mtime_ns)
    process = start_upscale(long_clip, tmp_path / "out.mp4", weights_dir)
    wait_until_writing(process, tmp_path)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == exit_code
    assert err.strip().splitlines()[-1] == "flashvsr: interrupted; no partial output was left"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert (file_digest(long_clip), long_clip.stat().st_mtime_ns) == before


def test_kill_leaves_no_output_and_the_next_run_cleans_up(tmp_path, long_clip, weights_dir):
    before = (file_digest(long_clip), long_clip.stat().st_mtime_ns)
    process = start_upscale(long_clip, tmp_path / "out.mp4", weights_dir)
    wait_until_writing(process, tmp_path)
    process.kill()  # SIGKILL: nothing can run; only the hidden partial file may stay
    process.communicate(timeout=60)
    assert not (tmp_path / "out.mp4").exists()
    assert [p.name.startswith(".out.mp4.partial-") for p in tmp_path.iterdir()] == [True]
    assert (file_digest(long_clip), long_clip.stat().st_mtime_ns) == before

    short = write_video(tmp_path.parent / f"{tmp_path.name}-short.mp4", 5, 32, 32)
    rerun = start_upscale(short, tmp_path / "out.mp4", weights_dir)
    _, err = rerun.communicate(timeout=STARTUP_TIMEOUT)
    assert rerun.returncode == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # the dead run's partial is gone
    assert probe(tmp_path / "out.mp4").frames == 5
