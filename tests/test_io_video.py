"""flashvsr.io.video: probing, reading with timestamps and rotation, writing with audio and colour."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from flashvsr.io import MediaError, open_reader, probe
from flashvsr.io.color import MATRIX_BT709, MATRIX_SMPTE170M, RANGE_FULL, RANGE_LIMITED, ColorInfo
from flashvsr.io.media import TimedFrame
from flashvsr.io.video import VIDEO_CODECS, VideoOutputSpec, VideoWriter

from .media_helpers import audio_packets, audio_seconds, decoded_frames, moving_pattern, video_timestamps, write_video

NTSC = Fraction(30000, 1001)


def test_probe_reports_exact_rate_frames_duration_and_audio(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", 30, 64, 48, rate=NTSC, time_base=Fraction(1, 30000), audio="aac")
    info = probe(path)
    assert (info.kind, info.width, info.height, info.frames) == ("video", 64, 48, 30)
    assert info.fps == NTSC and isinstance(info.fps, Fraction)
    assert info.time_base == Fraction(1, 30000)
    assert info.duration == pytest.approx(30 / float(NTSC), abs=1e-3)
    assert info.rotation == 0
    assert len(info.audio) == 1 and info.audio[0].codec == "aac" and info.audio[0].channels == 2
    assert "30000/1001" in info.summary()


def test_probe_counts_frames_when_the_container_does_not_say(tmp_path):
    path = write_video(tmp_path / "clip.mkv", 13, 32, 32)  # Matroska stores no frame count
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0
    assert probe(path).frames == 13


def test_rotation_is_applied_to_size_and_pixels(tmp_path):
    images = [moving_pattern(i, 48, 32) for i in range(3)]
    # FFV1 in RGB is lossless, so the upright frames can be compared exactly
    path = write_video(tmp_path / "rot.mkv", 3, 48, 32, codec="ffv1", pix_fmt="bgr0", rotation=90, images=images)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (32, 48, 90)
    frames = list(open_reader(info).frames())
    for frame, image in zip(frames, images):
        np.testing.assert_array_equal(frame.image, np.rot90(image, 1))  # 90° counter-clockwise


def test_reader_keeps_each_frames_pts(tmp_path):
    pts = [0, 1001, 3003, 4004, 9009, 10010, 12012]
    path = write_video(tmp_path / "vfr.mp4", len(pts), 32, 32, rate=NTSC, time_base=Fraction(1, 30000), pts=pts)
    frames = list(open_reader(probe(path)).frames())
    assert [f.pts for f in frames] == pts


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.mp4", "no such file"),
        (lambda p: _write(p / "garbage.mp4", b"this is not a video" * 100), "not a video"),
        (lambda p: _write(p / "empty.mp4", b""), "not a video"),
        (lambda p: write_video(p / "x.mp4", 5, 32, 32, audio="aac").parent / "missing-dir" / "x.mp4", "no such file"),
    ],
)
def test_probe_errors_name_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(MediaError, match=message) as err:
        probe(path)
    assert str(path) in str(err.value)


def test_audio_only_file_is_not_a_video(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(MediaError, match="no video stream"):
        probe(path)


def test_video_without_frames_is_refused(tmp_path):
    path = tmp_path / "zero.avi"  # AVI keeps an empty video track (MP4 drops it)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()  # a valid file whose video track has no samples
    assert path.stat().st_size > 0
    with pytest.raises(MediaError, match="no frames"):
        probe(path)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------
# Writing


def _spec(codec="h264", **kw):
    base = {"codec": VIDEO_CODECS[codec], "width": 64, "height": 48, "rate": NTSC, "time_base": Fraction(1, 30000)}
    return VideoOutputSpec(**{**base, **kw})


def _write_frames(path, spec, pts, durations=None):
    writer = VideoWriter(path, spec)
    for i, p in enumerate(pts):
        writer.write(TimedFrame(moving_pattern(i, spec.width, spec.height), p, durations[i] if durations else None))
    writer.close()
    return path


def test_writer_keeps_variable_timestamps_exactly(tmp_path):
    pts = [0, 1001, 3003, 4004, 9009, 10010, 11011, 15015]
    path = _write_frames(tmp_path / "out.mp4", _spec(), pts, durations=[1001] * len(pts))
    assert video_timestamps(path) == [Fraction(p, 30000) for p in pts]


def test_ffv1_output_is_lossless(tmp_path):
    path = _write_frames(tmp_path / "out.mkv", _spec("ffv1"), [0, 1001, 2002])
    for i, frame in enumerate(decoded_frames(path)):
        np.testing.assert_array_equal(frame, moving_pattern(i, 64, 48))


@pytest.mark.parametrize("codec, suffix", [("h265", ".mp4"), ("prores", ".mov")])
def test_other_codecs_write_playable_files(tmp_path, codec, suffix):
    path = _write_frames(tmp_path / f"out{suffix}", _spec(codec), [0, 1001, 2002])
    info = probe(path)
    assert (info.frames, info.width, info.height) == (3, 64, 48)
    assert info.codec == {"h265": "hevc", "prores": "prores"}[codec]


def test_colour_tags_are_written_and_used(tmp_path):
    color = ColorInfo(MATRIX_BT709, RANGE_FULL, 1, 1)
    flat = [np.tile(np.array([200, 40, 40], np.uint8), (48, 64, 1))] * 3
    writer = VideoWriter(tmp_path / "out.mp4", _spec(color=color))
    for i, image in enumerate(flat):
        writer.write(TimedFrame(image, i * 1001))
    writer.close()
    info = probe(tmp_path / "out.mp4")
    assert info.color == color
    mean = np.mean([f.image.reshape(-1, 3).mean(0) for f in open_reader(info).frames()], axis=0)
    np.testing.assert_allclose(mean, [200, 40, 40], atol=3)


def test_untagged_input_is_read_and_tagged_as_players_assume(tmp_path):
    sd = write_video(tmp_path / "sd.mp4", 2, 64, 48)  # no tags: BT.601 below 720 lines
    assert probe(sd).color.matrix == MATRIX_SMPTE170M and probe(sd).color.range == RANGE_LIMITED
    assert ColorInfo().resolved(height=720).matrix == MATRIX_BT709


def test_audio_is_copied_bit_exactly_alongside_the_video(tmp_path):
    source = write_video(tmp_path / "in.mp4", 25, 64, 48, rate=NTSC, time_base=Fraction(1, 30000), audio="aac")
    spec = _spec(audio_source=source)
    path = _write_frames(tmp_path / "out.mp4", spec, [i * 1001 for i in range(25)])
    assert audio_packets(path) == audio_packets(source)
    assert audio_seconds(path) == audio_seconds(source)


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path):
    source = write_video(tmp_path / "in.mov", 25, 64, 48, audio="pcm_mulaw", audio_seconds=1.0)  # MP4 has no µ-law
    path = _write_frames(tmp_path / "out.mp4", _spec(audio_source=source, rate=Fraction(25), time_base=Fraction(1, 25)),
                         list(range(25)))  # fmt: skip
    with av.open(str(path)) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac"]
    assert audio_seconds(path) == pytest.approx(audio_seconds(source), abs=0.03)


def test_prores_in_mp4_is_refused_before_writing(tmp_path):
    from flashvsr.io.video import check_codec_fits

    with pytest.raises(MediaError, match="MP4"):
        check_codec_fits(VIDEO_CODECS["prores"], tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_size_changes_and_timestamp_restarts_midstream_are_evened_out(tmp_path):
    # two MPEG-TS files glued together: the second restarts its clock at another size
    first = write_video(tmp_path / "a.ts", 5, 32, 32)
    second = write_video(tmp_path / "b.ts", 5, 48, 40)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    frames = list(open_reader(probe(joined)).frames())
    assert len(frames) == 10
    assert {f.image.shape for f in frames} == {(32, 32, 3)}
    pts = [f.pts for f in frames]
    assert pts == sorted(set(pts))  # strictly increasing, as encoders require
