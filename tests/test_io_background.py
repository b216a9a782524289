"""Encoding on a thread of its own: order, a bounded queue, errors and aborts reach the caller."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from flashvsr.io.background import BackgroundWriter, read_ahead
from flashvsr.io.media import TimedFrame


class Recorder:
    """A writer that keeps what it is given; optionally slow, or failing at one frame."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None):
        self.delay, self.fail_at = delay, fail_at
        self.written: list[int] = []
        self.threads: set[str] = set()
        self.closed = self.aborted = False
        self.release = threading.Event()
        self.release.set()

    def write(self, frame: TimedFrame) -> None:
        self.release.wait()
        time.sleep(self.delay)
        if frame.pts == self.fail_at:
            raise OSError(28, "No space left on device")
        self.threads.add(threading.current_thread().name)
        self.written.append(frame.pts)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def frames(n: int):
    return [TimedFrame(np.zeros((2, 2, 3), np.uint8), pts, 1) for pts in range(n)]


def test_every_frame_is_encoded_in_order_on_the_encoder_thread():
    inner = Recorder(delay=0.002)
    writer = BackgroundWriter(lambda: inner, capacity=4)
    for f in frames(30):
        writer.write(f)
    writer.close()
    assert inner.written == list(range(30)) and inner.closed and not inner.aborted
    assert inner.threads == {"flashvsr-encoder"}


def test_the_queue_is_bounded_so_a_slow_encoder_holds_the_caller_back():
    inner = Recorder()
    inner.release.clear()  # the encoder takes one frame and stops
    writer = BackgroundWriter(lambda: inner, capacity=3)
    handed = []
    feeder = threading.Thread(target=lambda: [writer.write(f) or handed.append(f.pts) for f in frames(10)])
    feeder.start()
    time.sleep(0.5)
    assert len(handed) == 3 + 1  # three queued, one in the encoder's hands
    inner.release.set()
    feeder.join(timeout=10)
    writer.close()
    assert inner.written == list(range(10))


def test_an_encoder_error_reaches_the_caller_and_the_file_is_released():
    inner = Recorder(fail_at=5)
    writer = BackgroundWriter(lambda: inner, capacity=2)
    with pytest.raises(OSError, match="No space left"):
        try:
            for f in frames(50):
                writer.write(f)
            writer.close()
        except BaseException:  # as run_job's writer context does
            writer.abort()
            raise
    assert inner.written == list(range(5)) and inner.aborted and not inner.closed
    assert not writer.thread.is_alive()


def test_an_error_in_the_last_frames_is_raised_by_close():
    inner = Recorder(fail_at=9)
    writer = BackgroundWriter(lambda: inner, capacity=16)
    for f in frames(10):
        writer.write(f)
    with pytest.raises(OSError):
        writer.close()
    assert inner.aborted and not inner.closed


def test_abort_drops_queued_frames_and_stops_the_encoder():
    inner = Recorder()
    inner.release.clear()
    writer = BackgroundWriter(lambda: inner, capacity=8)
    for f in frames(6):
        writer.write(f)
    inner.release.set()
    writer.abort()
    assert inner.aborted and not inner.closed and not writer.thread.is_alive()
    assert len(inner.written) <= 1  # at most the frame the encoder already held


# --------------------------------------------------------------------------------------------
# read_ahead: decoding on a thread of its own


def test_read_ahead_gives_every_item_in_order_from_another_thread():
    threads = []

    def items():
        for i in range(50):
            threads.append(threading.current_thread())
            yield i

    assert list(read_ahead(items(), capacity=4)) == list(range(50))
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_read_ahead_stays_within_its_capacity():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i

    it = read_ahead(items(), capacity=3)
    assert next(it) == 0
    time.sleep(0.3)
    assert len(made) <= 1 + 3 + 1  # the one taken, the queue, and one waiting to be queued
    it.close()


def test_read_ahead_raises_an_error_where_it_occurred():
    def items():
        yield 1
        yield 2
        raise ValueError("damaged frame")

    it = read_ahead(items())
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(ValueError, match="damaged frame"):
        next(it)


def test_closing_read_ahead_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def items():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed.set()

    before = threading.active_count()
    it = read_ahead(items(), capacity=2)
    assert next(it) == 0
    it.close()
    assert closed.is_set()
    assert threading.active_count() == before


def test_the_writer_is_opened_on_the_encoder_thread_at_a_lower_priority():
    seen = {}

    def open_writer():
        seen["thread"] = threading.current_thread().name
        if sys.platform.startswith("linux"):
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return Recorder()

    before = os.getpriority(os.PRIO_PROCESS, 0) if sys.platform.startswith("linux") else None
    writer = BackgroundWriter(open_writer, niceness=5)
    writer.close()
    assert seen["thread"] == "flashvsr-encoder"
    if before is not None:
        assert seen["nice"] == min(before + 5, 19)  # the feeding thread keeps its own
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_an_error_opening_the_writer_is_raised_by_the_constructor():
    def open_writer():
        raise OSError(13, "Permission denied")

    with pytest.raises(OSError, match="Permission denied"):
        BackgroundWriter(open_writer)
