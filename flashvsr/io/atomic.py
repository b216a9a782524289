"""All-or-nothing outputs: write next to the target under a hidden name, rename on success.

A failed, cancelled or interrupted run deletes its partial output; a killed one (SIGKILL,
power loss) leaves only the hidden partial file, never a half file under the output's name,
and the next run for the same output removes it. The input is only ever opened for reading.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

from .media import MediaError

PARTIAL_MARK = ".partial-"  # hidden partial outputs are named ".<name>.partial-<pid><suffix>"
INTERRUPT_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s)
SIGNAL_EXIT_BASE = 128  # shells report death by signal N as exit status 128 + N


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when the process gets SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT_BASE + self.signum


def partial_path(final: Path, pid: int | None = None) -> Path:
    """The hidden name a run writes ``final`` under (the suffix is kept: muxers read it)."""
    return final.with_name(f".{final.name}{PARTIAL_MARK}{pid or os.getpid()}{final.suffix}")


class AtomicOutput:
    """Context manager yielding a partial path (a file, or a folder when ``folder``) that
    becomes ``final`` only when the block completes without an exception."""

    def __init__(self, final: Path, overwrite: bool = False, folder: bool = False):
        self.final = final
        self.overwrite = overwrite
        self.folder = folder
        self.partial = partial_path(final)

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.final)
        _remove(self.partial)
        if self.folder:
            self.partial.mkdir()
        return self.partial

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self._commit()
        else:
            _remove(self.partial)
        return False  # never swallow the exception

    def _commit(self) -> None:
        if self.final.exists() and not self.overwrite:
            _remove(self.partial)
            raise MediaError(f"{self.final}: appeared while writing; pass --overwrite to replace it")
        if self.folder and self.final.is_dir():
            _move_files_into(self.partial, self.final)
        else:
            os.replace(self.partial, self.final)


def _move_files_into(source: Path, target: Path) -> None:
    """Merge a finished partial folder into an existing one (same names are replaced)."""
    for item in source.iterdir():
        os.replace(item, target / item.name)
    source.rmdir()


def remove_stale_partials(final: Path) -> None:
    """Delete partial outputs for ``final`` left by runs that were killed."""
    prefix = f".{final.name}{PARTIAL_MARK}"
    if not final.parent.is_dir():
        return
    for candidate in final.parent.iterdir():
        if candidate.name.startswith(prefix):
            pid = _pid_in(candidate.name[len(prefix) :])
            if pid is not None and not _process_alive(pid):
                _remove(candidate)


def _pid_in(rest: str) -> int | None:
    digits = rest.split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def interrupt_on_signals():
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`Interrupted` (main thread only), so that every
    ``with`` block unwinds and partial outputs are deleted; later signals are ignored while
    that cleanup runs."""
    state = {"raised": False}

    def handler(signum, frame):
        if not state["raised"]:
            state["raised"] = True
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
