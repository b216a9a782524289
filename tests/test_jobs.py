"""Upscaling jobs end to end with a tiny random model: exact frames, sizes, timestamps, audio,
colour and rotation; image and folder inputs; progress, cancel and failure leave no output."""

from __future__ import annotations

import threading
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from flashvsr.io import IMAGE_SEQUENCE, open_reader, probe
from flashvsr.io.color import MATRIX_BT709, RANGE_FULL, ColorInfo
from flashvsr.jobs import JobCancelled, OutputSettings, SizeRequest, plan_job, run_job
from flashvsr.pipeline import Upscaler

from .media_helpers import audio_packets, audio_seconds, file_digest, video_timestamps, write_images, write_video

pytest_plugins = ["tests.media_fixtures"]  # fixtures: weights_dir, upscaler, one_torch_thread

NTSC = Fraction(30000, 1001)


def even(n: int) -> int:
    return n + n % 2


# (frames, input width, height, size request, expected output width, height)
EXACTNESS_CASES = [
    (1, 33, 17, {"scale": 3}, even(99), even(51)),  # one frame, odd sizes
    (2, 30, 46, {"scale": 2}, 60, 92),  # portrait
    (7, 35, 27, {"scale": 2.6}, even(round(35 * 2.6)), even(round(27 * 2.6))),  # float scale
    (21, 64, 48, {"width": 200}, 200, 150),  # target width, aspect kept
    (100, 40, 24, {"scale": 4}, 160, 96),
]


@pytest.mark.parametrize("frames, w, h, size, out_w, out_h", EXACTNESS_CASES)
def test_every_frame_at_exactly_the_requested_size(tmp_path, upscaler, frames, w, h, size, out_w, out_h):
    # odd sizes cannot be 4:2:0, so inputs are lossless RGB FFV1
    source = write_video(tmp_path / "in.mkv", frames, w, h, codec="ffv1", pix_fmt="bgr0")
    result = upscaler.upscale_file(source, tmp_path / "out.mp4", **size)
    out = probe(tmp_path / "out.mp4")
    assert (out.frames, out.width, out.height) == (frames, out_w, out_h)
    assert (result.frames, result.out_size) == (frames, (out_w, out_h))
    assert len(video_timestamps(tmp_path / "out.mp4")) == frames  # decoded, not just the header's count
    assert video_timestamps(tmp_path / "out.mp4") == video_timestamps(source)


def test_lossless_rgb_output_keeps_odd_sizes(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mkv", 3, 33, 17, codec="ffv1", pix_fmt="bgr0")
    upscaler.upscale_file(source, tmp_path / "out.mkv", scale=3, codec="ffv1")
    out = probe(tmp_path / "out.mkv")
    assert (out.frames, out.width, out.height) == (3, 99, 51)  # no chroma subsampling: no rounding to even


def test_ntsc_rate_timestamps_and_audio_are_kept(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 45, 48, 32, rate=NTSC, time_base=Fraction(1, 30000), audio="aac")
    upscaler.upscale_file(source, tmp_path / "out.mp4", scale=2)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.video[0].average_rate == NTSC
        assert c.streams.video[0].guessed_rate == NTSC
    assert video_timestamps(tmp_path / "out.mp4") == video_timestamps(source)
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(source)  # copied, not re-encoded
    assert audio_seconds(tmp_path / "out.mp4") == audio_seconds(source)
    assert probe(tmp_path / "out.mp4").duration == pytest.approx(probe(source).duration, abs=1e-3)


def test_variable_frame_rate_is_kept(tmp_path, upscaler):
    pts = [0, 1001, 3003, 4004, 9009, 10010, 11011, 16016, 17017, 18018, 30030]
    source = write_video(tmp_path / "vfr.mp4", len(pts), 32, 32, rate=NTSC, time_base=Fraction(1, 30000), pts=pts)
    upscaler.upscale_file(source, tmp_path / "out.mkv", scale=4)
    # Matroska counts in milliseconds: the same instants, rounded to the millisecond
    out = video_timestamps(tmp_path / "out.mkv")
    assert [round(t * 1000) for t in out] == [round(Fraction(p, 30000) * 1000) for p in pts]
    upscaler.upscale_file(source, tmp_path / "out.mp4", scale=4)
    assert video_timestamps(tmp_path / "out.mp4") == [Fraction(p, 30000) for p in pts]


def test_every_audio_stream_is_kept_and_reencoded_only_when_needed(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mov", 30, 32, 32, audio=("aac", "pcm_mulaw"), audio_seconds=1.2)
    result = upscaler.upscale_file(source, tmp_path / "out.mp4", scale=4)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac", "aac"]  # µ-law is not allowed in MP4
    assert audio_packets(tmp_path / "out.mp4", 0) == audio_packets(source, 0)
    # AAC works in 1024-sample frames; the container trims the last one to the source's length
    durations = [a.duration for a in probe(tmp_path / "out.mp4").audio]
    assert durations == pytest.approx([a.duration for a in probe(source).audio], abs=1e-3)
    assert result.audio_streams == 2


def test_rotated_video_comes_out_upright(tmp_path, weights_dir, one_torch_thread):
    # wavelet colour fix keeps the input's lowest frequencies, so the layout survives a random model
    upscaler = Upscaler.load(weights_dir, device="cpu", dtype="float32", color_fix="wavelet")
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :32] = 230  # left half bright as stored; 90° counter-clockwise puts it at the bottom
    source = write_video(tmp_path / "phone.mp4", 5, 64, 32, rotation=90, images=[stored] * 5)
    upscaler.upscale_file(source, tmp_path / "out.mp4", scale=2)
    out = probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.rotation) == (64, 128, 0)
    with av.open(str(tmp_path / "out.mp4")) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    assert frame[96:].mean() > frame[:32].mean() + 100


def test_container_metadata_is_kept(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 3, 32, 32, metadata={"title": "Holiday", "comment": "first day"})
    upscaler.upscale_file(source, tmp_path / "out.mp4", scale=2)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert (c.metadata["title"], c.metadata["comment"]) == ("Holiday", "first day")


def test_anamorphic_pixel_shape_is_kept(tmp_path, upscaler):
    source = write_video(tmp_path / "dvd.mkv", 3, 72, 48, sample_aspect_ratio=Fraction(32, 27))
    upscaler.upscale_file(source, tmp_path / "out.mp4", scale=2)
    out = probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.pixel_aspect) == (144, 96, Fraction(32, 27))


def test_colour_metadata_is_kept_and_colours_do_not_shift(tmp_path, upscaler):
    tags = {"colorspace": MATRIX_BT709, "color_range": RANGE_FULL, "color_primaries": 1, "color_trc": 1}
    flat = [np.tile(np.array([200, 40, 40], np.uint8), (32, 32, 1))] * 9
    source = write_video(tmp_path / "in.mp4", 9, 32, 32, pix_fmt="yuvj420p", color=tags, images=flat)
    upscaler.upscale_file(source, tmp_path / "out.mp4", scale=4)
    out = probe(tmp_path / "out.mp4")
    assert out.color == ColorInfo(MATRIX_BT709, RANGE_FULL, 1, 1)
    source_rgb = next(open_reader(probe(source)).frames()).image.reshape(-1, 3).mean(0)
    output_rgb = next(open_reader(out).frames()).image.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(output_rgb, source_rgb, atol=2)  # 8-bit 4:2:0 rounding only
    with av.open(str(tmp_path / "out.mp4")) as c:  # what a wrong matrix and range would give
        misread = next(c.decode(video=0)).to_ndarray(format="rgb24", src_colorspace="itu601", src_color_range="MPEG")
    assert np.abs(misread.reshape(-1, 3).mean(0) - source_rgb).max() > 10


# --------------------------------------------------------------------------------------------
# Images and folders


def test_single_image_super_resolution(tmp_path, upscaler):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (21, 37, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    result = upscaler.upscale_file(tmp_path / "a.png", tmp_path / "a_x4.jpg", scale=4)
    with Image.open(tmp_path / "a_x4.jpg") as img:
        assert (img.format, img.size) == ("JPEG", (148, 84))
    assert result.frames == 1


def test_folder_to_folder_keeps_names_and_order(tmp_path, upscaler):
    names = [f"shot{i}" for i in (1, 2, 10, 11, 3)]
    write_images(tmp_path / "seq", 5, 40, 30, names=names)
    upscaler.upscale_file(tmp_path / "seq", tmp_path / "up", scale=2, image_format="jpg")
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == sorted(f"{n}.jpg" for n in names)
    for path in (tmp_path / "up").iterdir():
        assert Image.open(path).size == (80, 60)


def test_folder_to_video_and_video_to_folder(tmp_path, upscaler):
    write_images(tmp_path / "seq", 9, 32, 32)
    upscaler.upscale_file(tmp_path / "seq", tmp_path / "seq.mp4", scale=4, fps=Fraction(24000, 1001))
    info = probe(tmp_path / "seq.mp4")
    assert (info.frames, info.width, info.height, info.fps) == (9, 128, 128, Fraction(24000, 1001))
    upscaler.upscale_file(tmp_path / "seq.mp4", tmp_path / "frames", scale=1)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{i:06d}.png" for i in range(9)]


# --------------------------------------------------------------------------------------------
# Progress, cancel, failures


def test_progress_counts_every_frame(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 30, 32, 32)
    calls = []
    upscaler.upscale_file(source, tmp_path / "out.mp4", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 30) for i in range(1, 31)]


def test_cancel_stops_the_job_and_leaves_nothing(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 120, 32, 32)
    before = file_digest(source)
    cancel = threading.Event()

    def progress(done, total):
        if done == 30:
            cancel.set()

    with pytest.raises(JobCancelled):
        upscaler.upscale_file(source, tmp_path / "out.mp4", progress=progress, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    assert file_digest(source) == before


def test_a_job_can_run_in_a_thread_and_be_cancelled_from_outside(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 400, 32, 32)
    cancel, started, outcome = threading.Event(), threading.Event(), {}

    def work():
        try:
            upscaler.upscale_file(source, tmp_path / "out.mp4", progress=lambda d, t: started.set(), cancel=cancel)
            outcome["result"] = "finished"
        except JobCancelled:
            outcome["result"] = "cancelled"

    thread = threading.Thread(target=work)
    thread.start()
    assert started.wait(timeout=120)
    cancel.set()
    thread.join(timeout=120)
    assert outcome == {"result": "cancelled"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_failure_mid_run_leaves_no_output_and_keeps_the_old_one(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 40, 32, 32)
    (tmp_path / "out.mp4").write_bytes(b"an older result")

    def progress(done, total):
        if done == 10:
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        upscaler.upscale_file(source, tmp_path / "out.mp4", progress=progress, overwrite=True)
    assert (tmp_path / "out.mp4").read_bytes() == b"an older result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_plan_then_run_reports_what_it_did(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 10, 32, 32, audio="aac")
    job = plan_job(source, tmp_path / "out.mov", SizeRequest(scale=4), OutputSettings(codec="prores"))
    assert (job.geometry.out_w, job.geometry.out_h) == (128, 128)
    assert not (tmp_path / "out.mov").exists()  # planning writes nothing
    result = run_job(upscaler, job)
    assert probe(tmp_path / "out.mov").codec == "prores"
    assert "10 frames, 32×32 → 128×128" in result.summary() and "1 audio stream" in result.summary()


def test_damaged_video_is_upscaled_as_far_as_it_decodes_with_a_warning(tmp_path, upscaler):
    source = write_video(tmp_path / "in.mp4", 30, 32, 32)  # MP4 keeps its index at the end: 30 frames declared
    data = bytearray(source.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 300] = bytes(300)  # damage a stretch of encoded frames
    source.write_bytes(bytes(data))
    result = upscaler.upscale_file(source, tmp_path / "out.mp4", scale=2)
    decoded = sum(1 for _ in open_reader(probe(source)).frames())
    assert 0 < decoded < 30
    assert probe(tmp_path / "out.mp4").frames == decoded == result.frames
    assert any(f"declares 30 frames but {decoded} could be decoded" in w for w in result.warnings), result.warnings


def test_trailing_slash_makes_a_dotted_name_a_folder(tmp_path):
    from flashvsr.jobs import plan_jobs

    clip = write_video(tmp_path / "in.mp4", frames=3, width=32, height=24)
    settings = OutputSettings()
    as_folder = plan_jobs([clip], str(tmp_path / "frames.v2") + "/", SizeRequest(scale=2), settings)
    assert as_folder[0].output.name == "frames.v2" and as_folder[0].output_kind == IMAGE_SEQUENCE


def test_an_output_that_cannot_be_opened_fails_the_job_before_any_frame(tmp_path, upscaler, monkeypatch):
    """The writer opens on the encoder's thread; its error still reaches the caller, unchanged."""
    import flashvsr.jobs as jobs
    from flashvsr.io import MediaError

    source = write_video(tmp_path / "in.mp4", 12, 32, 32)
    frames_seen = []

    def refuse(job, reader, partial):
        raise MediaError(f"{partial}: cannot start writing (Permission denied)")

    monkeypatch.setattr(jobs, "_writer", refuse)
    with pytest.raises(MediaError, match="cannot start writing"):
        upscaler.upscale_file(source, tmp_path / "out.mp4", progress=lambda done, total: frames_seen.append(done))
    assert frames_seen == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
