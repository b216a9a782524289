"""Colour metadata: which YUV↔RGB matrix and range a video uses, and what its output is tagged.

The model works on RGB. Decoding must use the input's matrix and range, and encoding must use
the same ones and say so in the output, or colours shift. Untagged video is read the way
players read it (BT.709 from 720 lines up, BT.601 below); the output is then tagged with that
choice, because a player would otherwise guess again from the output's larger size.
Primaries and transfer are copied as they are: the pixels stay in the input's gamut and curve.

Values are FFmpeg's enum codes (libavutil/pixfmt.h: AVColorSpace, AVColorRange,
AVColorPrimaries, AVColorTransferCharacteristic), as PyAV exposes them on frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from av.video.reformatter import Interpolation

MATRIX_RGB, MATRIX_BT709, MATRIX_UNSPECIFIED, MATRIX_FCC = 0, 1, 2, 4
MATRIX_BT470BG, MATRIX_SMPTE170M, MATRIX_SMPTE240M, MATRIX_BT2020_NCL, MATRIX_BT2020_CL = 5, 6, 7, 9, 10
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
PRIMARIES_BT709, PRIMARIES_UNSPECIFIED = 1, 2
TRANSFER_UNSPECIFIED, TRANSFER_SRGB = 2, 13

HD_MIN_HEIGHT = 720  # players assume BT.709 for untagged video from this height up, BT.601 below

# swscale's names for the matrices it can convert with (PyAV's reformat takes these)
SWSCALE_MATRIX = {
    MATRIX_BT709: "itu709",
    MATRIX_FCC: "fcc",
    MATRIX_BT470BG: "itu601",
    MATRIX_SMPTE170M: "itu601",
    MATRIX_SMPTE240M: "smpte240m",
    MATRIX_BT2020_NCL: "bt2020",
    MATRIX_BT2020_CL: "bt2020",
}
SWSCALE_RANGE = {RANGE_LIMITED: "MPEG", RANGE_FULL: "JPEG"}
# swscale truncates by default, which darkens saturated colours by a level or two each way
SWSCALE_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND

MATRIX_NAMES = {
    MATRIX_RGB: "rgb", MATRIX_BT709: "bt709", MATRIX_UNSPECIFIED: "unspecified", MATRIX_FCC: "fcc",
    MATRIX_BT470BG: "bt470bg", MATRIX_SMPTE170M: "smpte170m", MATRIX_SMPTE240M: "smpte240m",
    MATRIX_BT2020_NCL: "bt2020nc", MATRIX_BT2020_CL: "bt2020c",
}  # fmt: skip
RANGE_NAMES = {RANGE_UNSPECIFIED: "unspecified", RANGE_LIMITED: "limited", RANGE_FULL: "full"}


@dataclass(frozen=True)
class ColorInfo:
    """The four colour tags of a video (FFmpeg enum codes)."""

    matrix: int = MATRIX_UNSPECIFIED
    range: int = RANGE_UNSPECIFIED
    primaries: int = PRIMARIES_UNSPECIFIED
    transfer: int = TRANSFER_UNSPECIFIED

    @staticmethod
    def of_frame(frame) -> ColorInfo:
        return ColorInfo(int(frame.colorspace), int(frame.color_range), int(frame.color_primaries), int(frame.color_trc))

    def resolved(self, height: int, pixel_format: str = "") -> ColorInfo:
        """The matrix and range actually in use: the tags, or what players assume without them."""
        matrix = self.matrix
        if matrix not in SWSCALE_MATRIX and matrix != MATRIX_RGB:
            matrix = MATRIX_BT709 if height >= HD_MIN_HEIGHT else MATRIX_SMPTE170M
        color_range = self.range
        if color_range == RANGE_UNSPECIFIED:
            color_range = RANGE_FULL if pixel_format.startswith("yuvj") else RANGE_LIMITED
        return replace(self, matrix=matrix, range=color_range)

    def for_yuv_output(self) -> ColorInfo:
        """Tags for a YUV output: RGB sources (images, RGB video) get BT.709, limited range."""
        if self.matrix == MATRIX_RGB:
            return replace(self, matrix=MATRIX_BT709, range=RANGE_LIMITED)
        return self

    def describe(self) -> str:
        matrix = MATRIX_NAMES.get(self.matrix, str(self.matrix))
        return f"{matrix}/{RANGE_NAMES.get(self.range, str(self.range))}"


# Images are sRGB: BT.709 primaries with the sRGB curve.
SRGB = ColorInfo(MATRIX_RGB, RANGE_FULL, PRIMARIES_BT709, TRANSFER_SRGB)


def decode_options(color: ColorInfo, is_rgb: bool) -> dict:
    """Keyword arguments for PyAV's ``to_ndarray``/``reformat`` reading YUV with ``color``."""
    if is_rgb:
        return {}
    return {
        "src_colorspace": SWSCALE_MATRIX[color.matrix],
        "src_color_range": SWSCALE_RANGE[color.range],
        "interpolation": SWSCALE_FLAGS,
    }


def encode_options(color: ColorInfo) -> dict:
    """Keyword arguments for ``reformat`` turning RGB into YUV with ``color``."""
    return {
        "dst_colorspace": SWSCALE_MATRIX[color.matrix],
        "dst_color_range": SWSCALE_RANGE[color.range],
        "interpolation": SWSCALE_FLAGS,
    }


def tag_codec(codec_context, color: ColorInfo) -> None:
    """Write the colour tags into an encoder, so that players decode with the same matrix."""
    codec_context.colorspace = color.matrix
    codec_context.color_range = color.range
    codec_context.color_primaries = color.primaries
    codec_context.color_trc = color.transfer
