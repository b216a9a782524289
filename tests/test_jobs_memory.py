"""Memory does not grow with the video's length: a long video streams through at flat RSS."""

from __future__ import annotations

import os
import sys

import pytest

from .media_helpers import write_video

pytest_plugins = ["tests.media_fixtures"]  # fixtures: upscaler

LONG_FRAMES = 2400  # 96 s at 25 fps
IN_SIZE, SCALE = 32, 4
WARM_UP_FRAMES = 400  # first calls allocate the caches, encoder lookahead, interleaving buffers
SAMPLE_EVERY = 50
MIB = 2**20


def resident_bytes() -> int:
    """Current resident set size of this process (not the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_resident_memory_is_flat_over_a_long_video(tmp_path, upscaler):
    source = write_video(tmp_path / "long.mp4", LONG_FRAMES, IN_SIZE, IN_SIZE, audio="aac")
    samples: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        if done % SAMPLE_EVERY == 0:
            samples.append((done, resident_bytes()))

    result = upscaler.upscale_file(source, tmp_path / "out.mp4", scale=SCALE, progress=progress)
    assert result.frames == LONG_FRAMES
    steady = [rss for done, rss in samples if done >= WARM_UP_FRAMES]
    growth = max(steady) - steady[0]
    # Keeping every output frame would add (LONG_FRAMES − WARM_UP_FRAMES) × 48 KiB ≈ 94 MiB, every
    # LQ frame (float32, 128×128) ≈ 375 MiB; allocator noise is well under a few MiB.
    out_frame_bytes = (IN_SIZE * SCALE) ** 2 * 3
    leak_of_outputs = (LONG_FRAMES - WARM_UP_FRAMES) * out_frame_bytes
    assert growth < leak_of_outputs / 4, f"RSS grew by {growth / MIB:.1f} MiB over {LONG_FRAMES - WARM_UP_FRAMES} frames"
