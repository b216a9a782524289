"""The streaming engine: per-stream state, the reference schedule, and the call loop."""

from .state import SeededNoise, StreamState, StreamTracer
from .stream import StreamingEngine, model_frame_size

__all__ = ["StreamingEngine", "StreamState", "StreamTracer", "SeededNoise", "model_frame_size"]
