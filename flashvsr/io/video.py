"""Video files with PyAV: probing, reading frames with their timestamps, writing with audio.

Reading yields upright RGB frames (rotation metadata applied) with each frame's pts in the
stream's time base. Writing encodes frames with those same pts and durations in that same
time base (so exact rational and variable frame rates survive), tags the colour metadata, and
copies every audio stream of the input packet by packet, re-encoding only the streams the
output container cannot hold. Everything is streamed: memory does not depend on the length.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .color import MATRIX_RGB, RANGE_UNSPECIFIED, SRGB, ColorInfo, decode_options, encode_options, tag_codec
from .media import VIDEO, AudioInfo, MediaError, MediaInfo, TimedFrame

QUARTER_TURN = 90
AUDIO_LEAD_SECONDS = 0.5  # audio is muxed this far ahead of the video written so far
FALLBACK_AUDIO_CODEC = "aac"  # for audio the output container cannot hold as it is
FALLBACK_AUDIO_BITRATE = 192_000
FALLBACK_AUDIO_RATE = 48_000
AAC_FRAME_SAMPLES = 1024
DEFAULT_FPS = Fraction(30)  # only for streams that declare no rate at all
MUXER_OWN_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands"})  # rewritten on output


# --------------------------------------------------------------------------------------------
# Output codecs and containers


@dataclass(frozen=True)
class VideoCodec:
    """One choice of ``--codec``: the FFmpeg encoder and how it is configured."""

    name: str
    encoder: str
    pixel_format: str
    extension: str  # container used when the user names none (batch outputs)
    default_crf: int | None = None  # None: the codec has no CRF (lossless or fixed profile)
    has_preset: bool = False
    options: dict[str, str] = field(default_factory=dict)
    codec_tag: str | None = None

    @property
    def is_rgb(self) -> bool:
        return av.VideoFormat(self.pixel_format).is_rgb

    @property
    def needs_even_size(self) -> bool:
        """Chroma subsampling (4:2:0, 4:2:2) needs even widths and heights."""
        return self.pixel_format.startswith("yuv4") and not self.pixel_format.startswith("yuv444")


VIDEO_CODECS = {
    "h264": VideoCodec("h264", "libx264", "yuv420p", ".mp4", default_crf=18, has_preset=True),
    "h265": VideoCodec(
        "h265", "libx265", "yuv420p", ".mp4", default_crf=20, has_preset=True,
        options={"x265-params": "log-level=error"}, codec_tag="hvc1",  # hvc1: QuickTime plays it
    ),
    "prores": VideoCodec("prores", "prores_ks", "yuv422p10le", ".mov", options={"profile": "3"}),  # 3 = HQ
    "ffv1": VideoCodec("ffv1", "ffv1", "bgr0", ".mkv", options={"level": "3"}),  # RGB: bit-exact
}  # fmt: skip
DEFAULT_CODEC = "h264"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# x264's "medium" needed about 9 of the H100 host's 16 cores to keep pace with the GPU and took them from the thread
# feeding it (file jobs 19.8 FPS); "faster": 0.57–0.66× its CPU time for the same size and 0.3–0.4 dB PSNR-Y at
# CRF 18 (41 dB), 33.8 FPS (benchmarks/encoder_presets.py, file_job_waits.py; BENCHMARKS.md)
DEFAULT_PRESET = "faster"
MAX_CRF = 51

# Output containers by extension (FFmpeg muxer names).
VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# What is accepted as a video inside a folder (single files are given to FFmpeg whatever their name).
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
     ".flv", ".wmv", ".3gp", ".ogv", ".y4m", ".gif"}
)  # fmt: skip


def check_codec_fits(codec: VideoCodec, path: Path) -> None:
    """Refuse a codec the output container cannot hold, before any work is done."""
    container = VIDEO_CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise MediaError(f"{path}: unknown video extension {path.suffix!r}; use one of {', '.join(VIDEO_CONTAINERS)}")
    if container == "mp4" and codec.name in ("prores", "ffv1"):
        raise MediaError(f"{path}: {codec.name} does not go in an MP4 file; write a .mov or .mkv file instead")


# --------------------------------------------------------------------------------------------
# Probing


def open_input(path: Path) -> av.container.InputContainer:
    check_readable_file(path)
    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: not a video or image FFmpeg can read ({_reason(e)})") from None


def check_readable_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file or folder")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: permission denied (cannot read it)")


def probe_video(path: Path) -> MediaInfo:
    """Size (as displayed), frame count, exact frame rate, duration, audio, rotation, colour."""
    with open_input(path) as container:
        stream = _video_stream(container, path)
        first = _first_frame(container, stream, path)
        rotation = _quarter_turns(first.rotation) * QUARTER_TURN
        width, height = (first.height, first.width) if rotation % 180 else (first.width, first.height)
        info = MediaInfo(
            path=path,
            kind=VIDEO,
            width=width,
            height=height,
            frames=stream.frames,
            fps=stream_rate(stream),
            duration=_duration(container, stream),
            time_base=stream.time_base or Fraction(1, 1),
            rotation=rotation,
            pixel_aspect=_pixel_aspect(stream, rotation),
            codec=stream.codec_context.name,
            pixel_format=first.format.name,
            audio=tuple(_audio_info(a) for a in container.streams.audio),
            color=_source_color(first),
            tags={k: v for k, v in container.metadata.items() if k not in MUXER_OWN_TAGS},
        )
    if info.frames <= 0:  # the container does not say: count packets (no decoding)
        info = _with_frames(info, count_video_packets(path))
    return info


def stream_rate(stream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def count_video_packets(path: Path) -> int:
    with open_input(path) as container:
        stream = _video_stream(container, path)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: cannot read the video stream ({_reason(e)})") from None


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise MediaError(f"{path}: has no video stream")
    return container.streams.video[0]


def _first_frame(container, stream, path: Path):
    try:
        for packet in container.demux(stream):
            for frame in _decode_or_skip(packet):
                return frame
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: cannot decode the video ({_reason(e)})") from None
    raise MediaError(f"{path}: the video has no frames")


def _decode_or_skip(packet) -> list:
    """The packet's frames, or none when it is damaged (FFmpeg's tools skip those too)."""
    try:
        return packet.decode()
    except av.error.InvalidDataError:
        return []


def _pixel_aspect(stream, rotation: int) -> Fraction | None:
    """Width:height of one pixel as displayed (turning the frame a quarter turns it over)."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if not sar or sar == 1:
        return None
    return 1 / Fraction(sar) if rotation % 180 else Fraction(sar)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _audio_info(stream) -> AudioInfo:
    ctx = stream.codec_context
    duration = float(stream.duration * stream.time_base) if stream.duration is not None and stream.time_base else None
    return AudioInfo(
        index=stream.index,
        codec=ctx.name,
        sample_rate=ctx.sample_rate,
        channels=ctx.channels,
        duration=duration,
        language=stream.metadata.get("language"),
    )


def _source_color(frame) -> ColorInfo:
    tags = ColorInfo.of_frame(frame)
    if frame.format.is_rgb:
        return ColorInfo(MATRIX_RGB, tags.range, tags.primaries, tags.transfer)
    return tags.resolved(frame.height, frame.format.name)


def _with_frames(info: MediaInfo, frames: int) -> MediaInfo:
    if frames <= 0:
        raise MediaError(f"{info.path}: the video has no frames")
    return replace(info, frames=frames)


def _quarter_turns(rotation: float | None) -> int:
    return round((rotation or 0) / QUARTER_TURN) % 4


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().splitlines()[0] if text and text.strip() else type(e).__name__


# --------------------------------------------------------------------------------------------
# Reading


class VideoReader:
    """Decodes one video stream into upright RGB frames with their own pts and durations."""

    def __init__(self, path: Path, info: MediaInfo | None = None):
        self.path = path
        self.info = info or probe_video(path)
        self.skipped_packets = 0  # corrupt packets FFmpeg could not decode (skipped, as ffmpeg does)

    def frames(self) -> Iterator[TimedFrame]:
        with open_input(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            timestamps = MonotonicTimestamps(self._frame_step(stream))
            for frame in self._decoded(container, stream):
                pts, duration = timestamps.next(frame.pts, frame.duration)
                yield TimedFrame(self._upright_rgb(frame), pts, duration)

    def _decoded(self, container, stream):
        try:
            for packet in container.demux(stream):
                yield from self._decode_packet(packet)
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.path}: cannot read the video ({_reason(e)})") from None

    def _decode_packet(self, packet):
        try:
            return packet.decode()
        except av.error.InvalidDataError:  # damaged: skipped and counted, as FFmpeg's tools skip it
            self.skipped_packets += 1
            return []

    def _upright_rgb(self, frame) -> np.ndarray:
        options = decode_options(self.info.color, frame.format.is_rgb)
        # streams that change resolution midway are scaled to the first frame's size, as ffmpeg does
        width, height = (self.info.height, self.info.width) if self.info.rotation % 180 else self.info.size
        image = frame.to_ndarray(format="rgb24", width=width, height=height, **options)
        turns = _quarter_turns(self.info.rotation)
        return np.ascontiguousarray(np.rot90(image, turns)) if turns else image

    def _frame_step(self, stream) -> int:
        """One frame's duration in the stream time base (to invent pts where there are none)."""
        rate = stream_rate(stream) or DEFAULT_FPS
        return max(1, round(1 / (rate * self.info.time_base)))


class MonotonicTimestamps:
    """Keeps pts as they are, except missing or non-increasing ones (broken files), which an
    encoder would refuse: those continue from the previous frame."""

    def __init__(self, step: int):
        self.step = step
        self.last: int | None = None

    def next(self, pts: int | None, duration: int | None) -> tuple[int, int | None]:
        if pts is None or (self.last is not None and pts <= self.last):
            pts = 0 if self.last is None else self.last + (duration or self.step)
        self.last = pts
        return pts, duration or None


# --------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class VideoOutputSpec:
    """Everything the writer needs, decided by the job before the file is opened."""

    codec: VideoCodec
    width: int
    height: int
    rate: Fraction
    time_base: Fraction
    color: ColorInfo = SRGB
    crf: int | None = None
    preset: str | None = None
    pixel_aspect: Fraction | None = None  # keep anamorphic video's pixel shape
    audio_source: Path | None = None  # copy every audio stream of this file
    metadata: dict[str, str] = field(default_factory=dict)
    # frame and slice threads, as the ffmpeg command uses: with PyAV's default (slices only) x264 splits each
    # frame across threads instead of encoding several frames at once, and a file job waits on its encoder
    encoder_threads: str = "AUTO"
    encoder_thread_count: int = 0  # 0: as many as the encoder chooses


class VideoWriter:
    """Encodes frames (with the source's pts) and copies the source's audio, interleaved."""

    def __init__(self, path: Path, spec: VideoOutputSpec):
        self.path = path
        self.spec = spec
        self.color = _rgb_tags(spec.color) if spec.codec.is_rgb else spec.color.for_yuv_output()
        self.durations: dict[int, int] = {}  # pts → duration of frames still inside the encoder
        self.container = av.open(str(path), "w", format=VIDEO_CONTAINERS[path.suffix.lower()])
        try:
            self.stream = self._add_video_stream()
            self.audio = AudioTracks(spec.audio_source, self.container) if spec.audio_source else None
            self.container.metadata.update(spec.metadata)
            self.container.start_encoding()
        except (av.error.FFmpegError, ValueError) as e:
            self.abort()
            raise MediaError(f"{path}: cannot start writing ({_reason(e)})") from None

    def _add_video_stream(self):
        spec, codec = self.spec, self.spec.codec
        stream = self.container.add_stream(codec.encoder, rate=spec.rate, options=self._encoder_options())
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, codec.pixel_format
        stream.codec_context.thread_type = spec.encoder_threads
        stream.codec_context.thread_count = spec.encoder_thread_count
        # The source's time base, in the stream and the encoder, so every pts is kept exactly.
        stream.time_base = spec.time_base
        stream.codec_context.time_base = spec.time_base
        if codec.codec_tag:
            stream.codec_context.codec_tag = codec.codec_tag
        if spec.pixel_aspect:
            stream.codec_context.sample_aspect_ratio = spec.pixel_aspect
        tag_codec(stream.codec_context, self.color)
        return stream

    def _encoder_options(self) -> dict[str, str]:
        spec, codec = self.spec, self.spec.codec
        options = dict(codec.options)
        if codec.default_crf is not None:
            options["crf"] = str(spec.crf if spec.crf is not None else codec.default_crf)
        if codec.has_preset:
            options["preset"] = spec.preset or DEFAULT_PRESET
        return options

    def write(self, frame: TimedFrame) -> None:
        video_frame = self._to_video_frame(frame)
        if frame.duration:
            self.durations[frame.pts] = frame.duration
        self._mux_video(self.stream.encode(video_frame))
        if self.audio:
            self.audio.copy_until(float(frame.pts * self.spec.time_base) + AUDIO_LEAD_SECONDS)

    def _to_video_frame(self, frame: TimedFrame):
        image = frame.image
        if image.shape[:2] != (self.spec.height, self.spec.width):
            raise ValueError(f"frame is {image.shape[1]}×{image.shape[0]}, the video {self.spec.width}×{self.spec.height}")
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if self.spec.codec.is_rgb:
            out = rgb.reformat(format=self.spec.codec.pixel_format)
        else:
            out = rgb.reformat(format=self.spec.codec.pixel_format, **encode_options(self.color))
        out.pts = frame.pts
        out.time_base = self.spec.time_base
        return out

    def _mux_video(self, packets) -> None:
        for packet in packets:
            # Encoders guess each packet's duration from the nominal rate; the source knows better
            # (variable frame rate, and the last frame's duration sets the stream's length).
            duration = self.durations.pop(packet.pts, None)
            if duration:
                packet.duration = duration
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio and finish the file."""
        try:
            self._mux_video(self.stream.encode(None))
            if self.audio:
                self.audio.finish()
            self.container.close()
        except av.error.FFmpegError as e:
            self.abort()
            raise MediaError(f"{self.path}: cannot finish writing ({_reason(e)})") from None
        finally:
            if self.audio:
                self.audio.close()

    def abort(self) -> None:
        """Release the files without finishing them (the caller deletes the partial output)."""
        audio = getattr(self, "audio", None)
        if audio:
            audio.close()
        try:
            self.container.close()
        except (av.error.FFmpegError, OSError, ValueError):
            pass  # the partial file is discarded anyway


def _rgb_tags(color: ColorInfo) -> ColorInfo:
    """RGB output has no matrix or range; primaries and transfer still apply."""
    return ColorInfo(MATRIX_RGB, RANGE_UNSPECIFIED, color.primaries, color.transfer)


# --------------------------------------------------------------------------------------------
# Audio


class AudioTracks:
    """Every audio stream of a source file, copied into an output container as it is written.

    A second demuxer on the source feeds the audio alongside the video being written, so that
    the output is interleaved and nothing accumulates in memory.
    """

    def __init__(self, source: Path, output):
        self.source = av.open(str(source), "r")
        streams = list(self.source.streams.audio)
        self.tracks = {s.index: self._add_track(s, output) for s in streams}
        self.output = output
        self.packets = self.source.demux(streams) if streams else iter(())
        self.next_packet = None

    @staticmethod
    def _add_track(stream, output):
        try:
            return CopiedAudio(stream, output)
        except ValueError:  # the container refuses this codec
            return ReencodedAudio(stream, output)

    @property
    def copied(self) -> list[bool]:
        return [isinstance(t, CopiedAudio) for t in self.tracks.values()]

    def copy_until(self, seconds: float) -> None:
        while True:
            packet = self._peek()
            if packet is None or _packet_seconds(packet) > seconds:
                return
            self.next_packet = None
            self.tracks[packet.stream.index].mux(packet, self.output)

    def finish(self) -> None:
        self.copy_until(float("inf"))
        for track in self.tracks.values():
            track.flush(self.output)

    def close(self) -> None:
        self.source.close()

    def _peek(self):
        if self.next_packet is None:
            self.next_packet = next(self.packets, None)
        return self.next_packet


def _packet_seconds(packet) -> float:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None:
        return float("-inf")  # untimed: mux it now
    return float(ts * packet.time_base)


class CopiedAudio:
    """An audio stream muxed without re-encoding (bit-identical packets)."""

    def __init__(self, stream, output):
        self.stream = output.add_stream_from_template(stream)
        self.stream.metadata.update(stream.metadata)

    def mux(self, packet, output) -> None:
        if packet.size:  # empty packets only mark the end of the input
            packet.stream = self.stream
            output.mux(packet)

    def flush(self, output) -> None:
        pass


class ReencodedAudio:
    """An audio stream the container cannot hold, decoded and encoded as AAC."""

    def __init__(self, stream, output):
        ctx = stream.codec_context
        rate = ctx.sample_rate if ctx.sample_rate in av.codec.Codec(FALLBACK_AUDIO_CODEC, "w").audio_rates else FALLBACK_AUDIO_RATE
        self.stream = output.add_stream(FALLBACK_AUDIO_CODEC, rate=rate)
        self.stream.layout = ctx.layout
        self.stream.bit_rate = FALLBACK_AUDIO_BITRATE
        self.stream.metadata.update(stream.metadata)
        self.resampler = av.AudioResampler(format="fltp", layout=ctx.layout, rate=rate, frame_size=AAC_FRAME_SAMPLES)

    def mux(self, packet, output) -> None:
        for frame in packet.decode():
            self._encode(self.resampler.resample(frame), output)

    def flush(self, output) -> None:
        self._encode(self.resampler.resample(None), output)
        for packet in self.stream.encode(None):
            output.mux(packet)

    def _encode(self, frames, output) -> None:
        for frame in frames:
            for packet in self.stream.encode(frame):
                output.mux(packet)
