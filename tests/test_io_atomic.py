"""flashvsr.io.atomic: partial outputs become the output only on success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from flashvsr.io.atomic import AtomicOutput, Interrupted, interrupt_on_signals, partial_path


def test_success_renames_the_partial_file(tmp_path):
    final = tmp_path / "out.mp4"
    with AtomicOutput(final) as partial:
        assert partial.parent == final.parent and partial.name.startswith(".out.mp4.partial-")
        assert partial.suffix == ".mp4"  # muxers pick the format from it
        partial.write_bytes(b"complete")
        assert not final.exists()
    assert final.read_bytes() == b"complete"
    assert not partial.exists()


def test_failure_deletes_the_partial_file_and_keeps_the_old_output(tmp_path):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"previous")
    with pytest.raises(RuntimeError), AtomicOutput(final, overwrite=True) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("encoder failed")
    assert final.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    final = tmp_path / "frames"
    with pytest.raises(KeyboardInterrupt), AtomicOutput(final, folder=True) as partial:
        (partial / "000000.png").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_folder_output_is_created_or_merged(tmp_path):
    final = tmp_path / "frames"
    with AtomicOutput(final, folder=True) as partial:
        (partial / "a.png").write_bytes(b"a")
    assert [p.name for p in final.iterdir()] == ["a.png"]
    (final / "keep.txt").write_text("user file")
    with AtomicOutput(final, overwrite=True, folder=True) as partial:
        (partial / "a.png").write_bytes(b"new")
    assert (final / "a.png").read_bytes() == b"new" and (final / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_partials_of_dead_runs_are_removed(tmp_path):
    final = tmp_path / "out.mp4"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = partial_path(final, pid=int(dead.stdout))
    stale.write_bytes(b"left by a killed run")
    alive = partial_path(final, pid=os.getppid())  # a live process's partial is not ours to delete
    alive.write_bytes(b"in progress elsewhere")
    with AtomicOutput(final) as partial:
        partial.write_bytes(b"done")
    assert not stale.exists() and alive.exists() and final.read_bytes() == b"done"


def test_sigterm_becomes_an_exception_that_unwinds(tmp_path):
    final = tmp_path / "out.mp4"
    with pytest.raises(Interrupted) as err, interrupt_on_signals(), AtomicOutput(final) as partial:
        partial.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGTERM)
    assert err.value.exit_code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are restored
