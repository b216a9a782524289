"""The reference streaming schedule (SPEC §5) as pure functions of the call index.

Latent frame j decodes to LQ frames [4j−3, 4j+1) (frame 0 alone for j = 0), while the DiT
sees it through LR-projection clip [4j+1, 4j+5): four LQ frames ahead of what is decoded,
which is how the released weights were trained. Call 0 makes latents 0…5 (three attention
time slices), every later call two more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import VAE_TEMPORAL_FACTOR, WINDOW

FIRST_CALL_LATENTS = 3 * WINDOW[0]  # three time slices, mutually visible
LATENTS_PER_CALL = WINDOW[0]  # one time slice
PRIMING_CLIP = (0, 1)  # frame 0, repeated to a whole clip
FRAMES_PER_CALL = LATENTS_PER_CALL * VAE_TEMPORAL_FACTOR  # output frames each steady call makes


def decoded_range(latent_start: int, latent_end: int) -> tuple[int, int]:
    """LQ/output frame indices that latents [start, end) decode to."""
    f = VAE_TEMPORAL_FACTOR
    return max(0, f * latent_start - (f - 1)), f * latent_end - (f - 1)


@dataclass(frozen=True)
class CallPlan:
    index: int
    latent_start: int  # first latent frame = first RoPE time position
    latent_count: int
    lq_clips: tuple[tuple[int, int], ...]  # LR-projection inputs, priming clip first in call 0
    decode: tuple[int, int]  # frames decoded (and emitted) by this call

    @property
    def lq_needed(self) -> int:
        """LQ frames that must have arrived before this call can run."""
        return self.lq_clips[-1][1]


def plan_call(index: int) -> CallPlan:
    if index == 0:
        start, count = 0, FIRST_CALL_LATENTS
    else:
        start, count = FIRST_CALL_LATENTS + LATENTS_PER_CALL * (index - 1), LATENTS_PER_CALL
    f = VAE_TEMPORAL_FACTOR
    clips = tuple((f * j + 1, f * j + 1 + f) for j in range(start, start + count))
    if index == 0:
        clips = (PRIMING_CLIP,) + clips
    return CallPlan(index, start, count, clips, decoded_range(start, start + count))


def calls_to_cover(num_frames: int) -> int:
    """Fewest calls whose decoded frames include frames 0…num_frames−1."""
    first = plan_call(0).decode[1]
    return 1 + max(0, math.ceil((num_frames - first) / FRAMES_PER_CALL))


def reference_frame_count(num_frames: int) -> int:
    """Frames the reference release processes for an N-frame input: the largest 8n+1 ≤ N+4."""
    return (num_frames + VAE_TEMPORAL_FACTOR - 1) // FRAMES_PER_CALL * FRAMES_PER_CALL + 1
