"""Decoding and encoding beside the upscaler: the input read ahead and the output written by
threads of their own, through bounded queues, so the thread that feeds the GPU only launches work.

PyAV (colour conversion, encoding) and Pillow (PNG, JPEG…) release the GIL while they work,
so encoding really runs at the same time as the main thread's decoding and model calls. The
queue's bound keeps memory constant: when the encoder is the slowest part, the upscaler waits.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from .media import TimedFrame

QUEUE_FRAMES = 16  # frames waiting for the encoder (two DiT calls' worth)
ENCODER_NICENESS = 10  # the encoder yields the CPU to the GPU's feeder: a starved feeder leaves the GPU idle
READ_AHEAD_FRAMES = 16  # decoded input frames waiting for the upscaler
POLL_SECONDS = 0.1  # how often a blocked hand-over looks whether the encoder has failed
_END = object()  # the queue's last item: no more frames
T = TypeVar("T")


class FrameWriter(Protocol):
    def write(self, frame: TimedFrame) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class BackgroundWriter:
    """The same write / close / abort as the writer it opens; ``write`` returns once the frame is
    queued. The writer is opened on the encoder's thread, after lowering that thread's priority by
    ``niceness`` (Linux), so that the encoder's own threads (x264 starts them when it opens) inherit
    it: they take the CPU only when the thread that feeds the GPU does not need it. An error opening
    the writer is raised by the constructor; an encoder error, unchanged, by the next ``write`` or
    by ``close``."""

    def __init__(
        self, open_writer: Callable[[], FrameWriter], capacity: int = QUEUE_FRAMES, niceness: int = ENCODER_NICENESS
    ):
        self.writer: FrameWriter | None = None
        self.frames: queue.Queue = queue.Queue(maxsize=capacity)
        self.failure: BaseException | None = None
        self.stop = threading.Event()  # abort: drop what is queued
        opened = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(open_writer, niceness, opened), name="flashvsr-encoder", daemon=True
        )
        self.thread.start()
        opened.wait()
        if self.writer is None:
            self.thread.join()
            self._raise_failure()

    def _run(self, open_writer: Callable[[], FrameWriter], niceness: int, opened: threading.Event) -> None:
        lower_thread_priority(niceness)
        try:
            self.writer = open_writer()
        except BaseException as e:  # raised by the constructor, in the caller's thread
            self.failure = e
            return
        finally:
            opened.set()
        self._encode()

    def write(self, frame: TimedFrame) -> None:
        self._put(frame)

    def close(self) -> None:
        """Wait until every queued frame is encoded, then finish the file."""
        try:
            self._put(_END)
            self.thread.join()
            self._raise_failure()
        except BaseException:
            self.abort()
            raise
        self.writer.close()

    def abort(self) -> None:
        """Stop encoding (queued frames are dropped) and release the file unfinished."""
        self.stop.set()
        self._drain()
        self.frames.put(_END)  # room after the drain: wakes an encoder waiting for frames
        self.thread.join()
        self.writer.abort()

    def _put(self, item) -> None:
        _put_in_steps(self.frames, item, self._still_encoding)  # an encoder that died cannot leave the caller waiting

    def _still_encoding(self) -> bool:
        self._raise_failure()
        return True

    def _encode(self) -> None:
        while not self.stop.is_set():
            item = self.frames.get()
            if item is _END or self.stop.is_set():
                return
            try:
                self.writer.write(item)
            except BaseException as e:  # handed to the caller's thread, which raises it
                self.failure = e
                return

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _drain(self) -> None:
        while True:
            try:
                self.frames.get_nowait()
            except queue.Empty:
                return


def read_ahead(items: Iterable[T], capacity: int = READ_AHEAD_FRAMES) -> Iterator[T]:
    """``items`` in order, produced by a thread of its own up to ``capacity`` ahead. An error
    raised by ``items`` is raised here, unchanged, where it occurred in the sequence; closing
    this iterator early stops the thread and closes ``items``."""
    ready: queue.Queue = queue.Queue(maxsize=capacity)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(iter(items), ready, stop), name="flashvsr-decoder", daemon=True)
    thread.start()
    try:
        while True:
            item, failure = ready.get()
            if failure is not None:
                raise failure
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _produce(items: Iterator, ready: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if not _offer(ready, (item, None), stop):
                return
        _offer(ready, (_END, None), stop)
    except BaseException as e:  # handed to the consumer, which raises it
        _offer(ready, (None, e), stop)
    finally:
        close = getattr(items, "close", None)
        if close:
            close()  # a generator's files are released on this thread, where it ran


def _offer(ready: queue.Queue, entry, stop: threading.Event) -> bool:
    """Queue ``entry`` unless the consumer has gone; a closed consumer never leaves this waiting."""
    return _put_in_steps(ready, entry, lambda: not stop.is_set())


def _put_in_steps(items: queue.Queue, item, go_on: Callable[[], bool]) -> bool:
    """Put ``item`` in a bounded queue, asking ``go_on`` before each wait of :data:`POLL_SECONDS`
    (it may raise); False once it says to give up."""
    while go_on():
        try:
            items.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value by ``niceness`` (Linux, where it is per thread and
    inherited by the threads it starts); elsewhere, or where refused, leave it."""
    if niceness <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except OSError:
        pass  # a lower priority is a preference, never a reason to fail the job
