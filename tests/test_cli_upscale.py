"""``flashvsr upscale`` and ``flashvsr probe``: what users type, what they see, and one clear
line (never a traceback) for every bad input or option."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flashvsr import cli
from flashvsr.io import probe
from flashvsr.pipeline import Upscaler

from .media_helpers import file_digest, write_images, write_video

pytest_plugins = ["tests.media_fixtures"]  # fixtures: weights_dir, one_torch_thread

OPTIONS = [
    "--output", "--scale", "--width", "--height", "--weights", "--release", "--variant", "--prompt", "--device",
    "--dtype", "--sparse-ratio", "--local-range", "--kv-ratio", "--color-fix", "--seed", "--codec", "--crf",
    "--preset", "--format", "--quality", "--fps", "--overwrite", "--quiet", "--compile", "--tile", "--tile-overlap",
    "--offload-tiles", "--stabilize", "--linears",
]  # fmt: skip


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def clip(tmp_path):
    return write_video(tmp_path / "clip.mp4", 12, 48, 32, audio="aac")


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["upscale", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in OPTIONS:
        assert option in text
    assert "examples:" in text
    assert "bench" in cli.build_parser().format_help()  # the benchmark command is still there


def test_upscale_a_video(tmp_path, capsys, clip, weights_dir, one_torch_thread):
    before = file_digest(clip)
    code, out, err = run(capsys, "upscale", clip, "-o", tmp_path / "up.mp4", "--weights", weights_dir, "--scale", 2)
    assert code == 0
    info = probe(tmp_path / "up.mp4")
    assert (info.frames, info.width, info.height, len(info.audio)) == (12, 96, 64, 1)
    summary = out.strip().splitlines()
    assert len(summary) == 1 and "clip.mp4 → " in summary[0] and "12 frames, 48×32 → 96×64" in summary[0]
    assert "fps" in summary[0] and "peak memory" in summary[0]
    assert "12/12" in err and "frame/s" in err  # the progress bar: done/total and speed
    assert file_digest(clip) == before


def test_quiet_prints_nothing(tmp_path, capsys, clip, weights_dir, one_torch_thread):
    code, out, err = run(capsys, "upscale", clip, "-o", tmp_path / "up.mkv", "--weights", weights_dir, "--quiet",
                         "--codec", "ffv1", "--color-fix", "wavelet", "--seed", 3)  # fmt: skip
    assert (code, out, err) == (0, "", "")
    assert probe(tmp_path / "up.mkv").frames == 12


def test_batch_loads_the_model_once(tmp_path, capsys, weights_dir, one_torch_thread, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", 3, 32, 32)
    write_video(videos / "b.mkv", 4, 32, 32)
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "photo.jpg")
    loads = []
    real_load = Upscaler.load.__func__
    monkeypatch.setattr(Upscaler, "load", classmethod(lambda cls, *a, **k: loads.append(1) or real_load(cls, *a, **k)))
    code, out, _ = run(capsys, "upscale", videos, tmp_path / "photo.jpg", "-o", tmp_path / "out", "--weights", weights_dir)
    assert code == 0 and len(loads) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mkv", "photo.jpg"]
    assert probe(tmp_path / "out" / "b.mkv").frames == 4
    assert Image.open(tmp_path / "out" / "photo.jpg").size == (120, 80)
    assert len(out.strip().splitlines()) == 3  # one summary per input


def test_folder_of_videos_alone_is_a_batch(tmp_path, capsys, weights_dir, one_torch_thread):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "only.mov", 2, 32, 32)
    code, _, _ = run(capsys, "upscale", tmp_path / "videos", "-o", tmp_path / "out", "--weights", weights_dir, "-q",
                     "--codec", "prores")  # fmt: skip
    assert code == 0 and probe(tmp_path / "out" / "only.mov").codec == "prores"


def test_image_folder_to_image_folder(tmp_path, capsys, weights_dir, one_torch_thread):
    write_images(tmp_path / "seq", 3, 24, 16, names=["f1", "f2", "f10"])
    code, _, _ = run(capsys, "upscale", tmp_path / "seq", "-o", tmp_path / "up", "--weights", weights_dir, "-q",
                     "--format", "webp", "--quality", 80, "--height", 40)  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["f1.webp", "f10.webp", "f2.webp"]
    assert Image.open(tmp_path / "up" / "f10.webp").size == (60, 40)


def test_overwrite_replaces_an_existing_output(tmp_path, capsys, clip, weights_dir, one_torch_thread):
    (tmp_path / "up.mp4").write_bytes(b"old")
    code, _, _ = run(capsys, "upscale", clip, "-o", tmp_path / "up.mp4", "--weights", weights_dir, "-q", "--overwrite",
                     "--crf", 30, "--preset", "ultrafast", "--codec", "h265")  # fmt: skip
    assert code == 0 and probe(tmp_path / "up.mp4").codec == "hevc"


def test_tiled_upscale_runs_end_to_end(tmp_path, capsys, clip, weights_dir, one_torch_thread):
    """48×32 ×4 → 192×128 output, a 256×128 model frame: two 128×128 tiles, states offloaded."""
    code, _, err = run(capsys, "upscale", clip, "-o", tmp_path / "up.mkv", "--weights", weights_dir, "--scale", 4,
                         "--codec", "ffv1", "--tile", "128x128", "--tile-overlap", 0, "--offload-tiles")  # fmt: skip
    assert code == 0, err
    assert "flashvsr: tiling: 2×1 tiles of 128×128, overlap 0 px, idle tiles in host memory" in err
    info = probe(tmp_path / "up.mkv")
    assert (info.frames, info.width, info.height) == (12, 192, 128)


def test_default_tiling_is_announced_and_off_on_cpu(tmp_path, capsys, weights_dir, one_torch_thread):
    write_video(tmp_path / "short.mp4", 2, 32, 32)
    code, _, err = run(capsys, "upscale", tmp_path / "short.mp4", "-o", tmp_path / "up.mp4", "--weights", weights_dir)
    assert code == 0 and "flashvsr: tiling: none, no device memory limit" in err


@pytest.mark.parametrize("value", ["100x128", "big", "128x0"])
def test_bad_tile_option_is_a_usage_error(tmp_path, capsys, clip, value):
    code, _, err = run(capsys, "upscale", clip, "-o", tmp_path / "up.mp4", "--tile", value)
    assert code == 2 and "--tile" in err and err.count("\n") == 1
    code, _, err = run(capsys, "upscale", clip, "-o", tmp_path / "up.mp4", "--tile-overlap", 100)
    assert code == 2 and "multiple of 128" in err


def test_probe_command(tmp_path, capsys, clip):
    code, out, _ = run(capsys, "probe", clip)
    assert code == 0 and "clip.mp4: video 48×32, 12 frames, 25 fps" in out and "audio aac" in out


# --------------------------------------------------------------------------------------------
# Bad inputs and options: one line on stderr, non-zero exit, nothing written


def _garbage(tmp_path):
    # seeded: about 1 in 200 random draws happens to probe as an audio-only stream ("has no video stream")
    path = tmp_path / "garbage.mp4"
    path.write_bytes(random.Random(0).randbytes(4096))
    return [path]


def _truncated(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", 20, 32, 32)
    path = tmp_path / "truncated.mp4"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the index (moov) is at the end: lost
    return [path]


def _zero_frames(tmp_path):
    import av

    path = tmp_path / "zero.avi"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()
    return [path]


def _audio_only(tmp_path):
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 48000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return [path]


def _text(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    return [path]


def _fifo(tmp_path):
    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)  # opening it for reading would block forever
    return [path]


def _empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return [tmp_path / "empty"]


def _mixed_sizes(tmp_path):
    write_images(tmp_path / "seq", 2, 32, 32)
    Image.new("RGB", (40, 32)).save(tmp_path / "seq" / "frame9.png")
    return [tmp_path / "seq"]


def _clip(tmp_path):
    return [write_video(tmp_path / "clip.mp4", 3, 32, 32)]


def _clip_and_existing_output(tmp_path):
    (tmp_path / "out.mp4").write_bytes(b"precious")
    return _clip(tmp_path)


def _clip_and_output_folder_file(tmp_path):
    (tmp_path / "outdir").write_text("a file, not a folder")
    return _clip(tmp_path) + [write_video(tmp_path / "second.mp4", 3, 32, 32)]


BAD_CASES = {
    # name: (make inputs, extra arguments (OUT = the output path), expected words in the message)
    "missing": (lambda t: [t / "nope.mp4"], [], "no such file"),
    "garbage": (_garbage, [], "not a video"),
    "truncated": (_truncated, [], "not a video"),
    "zero frames": (_zero_frames, [], "no frames"),
    "audio only": (_audio_only, [], "no video stream"),
    "not media": (_text, [], "not a video"),
    "fifo": (_fifo, [], "not a regular file"),
    "empty folder": (_empty_folder, [], "no images or videos"),
    "mixed sizes": (_mixed_sizes, [], "frame9.png"),
    "absurd scale": (_clip, ["--scale", "1000"], "too large"),
    "absurd width": (_clip, ["--width", "100000"], "too large"),
    "width below input": (_clip, ["--width", "16"], "smaller than the input"),
    "scale below one": (_clip, ["--scale", "0.5"], "≥ 1"),
    "scale not a number": (_clip, ["--scale", "nan"], "≥ 1"),
    "scale words": (_clip, ["--scale", "big"], "not a number"),
    "negative width": (_clip, ["--width", "-3"], "positive"),
    "scale and width": (_clip, ["--scale", "2", "--width", "64"], "not both"),
    "bad codec": (_clip, ["--codec", "divx"], "invalid choice"),
    "crf out of range": (_clip, ["--crf", "99"], "between 0 and 51"),
    "crf for prores": (_clip, ["--crf", "20", "--codec", "prores"], "does not apply"),
    "bad fps": (_clip, ["--fps", "0"], "positive"),
    "bad device": (_clip, ["--device", "toaster"], "not a device"),
    "output exists": (_clip_and_existing_output, [], "--overwrite"),
    "output is input": (lambda t: _clip(t), ["-o", "{input}"], "is the input"),
    "image for video": (_clip, ["-o", "{tmp}/frame.png"], "holds one frame"),
    "unknown extension": (_clip, ["-o", "{tmp}/out.xyz"], "unknown output extension"),
    "prores in mp4": (_clip, ["--codec", "prores"], "MP4"),
    "batch into a file": (_clip_and_output_folder_file, ["-o", "{tmp}/outdir"], "output folder"),
    "missing weights": (_clip, ["--weights", "{tmp}/no-such-weights"], "does not exist"),
    "wrong release": (_clip, ["--release", "v1"], "v1.1 model"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_gives_one_clear_line(tmp_path, capsys, weights_dir, case):
    make, extra, words = BAD_CASES[case]
    inputs = make(tmp_path)
    before = {p: file_digest(p) for p in inputs if p.is_file()}
    args = ["upscale", *inputs, "-o", tmp_path / "out.mp4", "--weights", weights_dir]
    args += [a.format(tmp=tmp_path, input=inputs[0]) for a in extra]
    code, _out, err = run(capsys, *args)
    lines = err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith("flashvsr") and "Traceback" not in err
    assert words in lines[0]
    assert {p: file_digest(p) for p in before} == before  # inputs untouched
    if case != "output exists":
        assert not (tmp_path / "out.mp4").exists()
    else:
        assert (tmp_path / "out.mp4").read_bytes() == b"precious"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_bad_weights_folder_gives_one_line(tmp_path, capsys, clip):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{not json")
    code, _, err = run(capsys, "upscale", clip, "-o", tmp_path / "out.mp4", "--weights", tmp_path / "weights")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "invalid model config" in err


def test_errors_from_the_real_command_have_no_traceback(tmp_path):
    garbage = _garbage(tmp_path)[0]
    done = subprocess.run(
        [sys.executable, "-m", "flashvsr.cli", "upscale", garbage, "-o", tmp_path / "out.mp4"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "garbage.mp4" in done.stderr


def test_unreadable_input_is_reported(tmp_path):
    secret = write_video(tmp_path / "secret.mp4", 3, 32, 32)
    os.chmod(secret, 0)
    command = [sys.executable, "-m", "flashvsr.cli", "upscale", str(secret), "-o", str(tmp_path / "out.mp4")]
    # root reads anything: run the command without the capabilities that let it
    without_root_override = _drop_file_read_override if os.geteuid() == 0 else None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                              preexec_fn=without_root_override)  # fmt: skip
    except subprocess.SubprocessError:  # a container without CAP_SETPCAP cannot drop capabilities
        pytest.skip("running as root and unable to give up root's permission to read any file")
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "permission denied" in done.stderr


def _drop_file_read_override() -> None:
    """In the child before exec: remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    capability bounding set, so that file permissions apply to root as to anyone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_bench_reports_fps_stage_times_and_its_settings(tmp_path):
    """`flashvsr bench` end to end on CPU, at a toy size with one official-width DiT block."""
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--layers", "1", "--height", "128", "--width", "256", "--frames", "5",
            "--warmup", "0", "--repeats", "1", "--compile", "--decoder-chunk", "2", "--offload-weights", "on",
            "--overlap-decode", "--stabilize", "--json", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    result = json.loads(out.read_text())
    assert result["fps"] > 0 and result["config"]["compile"] and result["config"]["layers"] == 1
    assert result["config"]["decoder_frame_chunk"] == 2 and result["config"]["offload_weights"] == "on"
    assert result["config"]["overlap_decode"] and result["config"]["stabilize"]
    assert "stabilize" in result["stage_ms_per_8_frames"]  # the filter ran and was timed
    assert {"lq_proj", "dit", "decode"} <= set(result["stage_ms_per_8_frames"])
    assert result["tiling"].startswith("tiling: none") and result["config"]["tile"] == "auto"
    assert result["tiling"].endswith("DiT weights streamed from host memory")
    tiled = cli.build_parser().parse_args(["bench", "--tile", "256x128", "--tile-overlap", "256", "--offload-tiles",
                                           "--memory-limit", "24", "--decoder-chunk", "1", "--kv-cache", "fp8"])  # fmt: skip
    assert (tiled.tile, tiled.tile_overlap, tiled.offload_tiles, tiled.memory_limit) == ((128, 256), 256, True, 24.0)
    assert (tiled.decoder_chunk, tiled.kv_cache) == (1, "fp8")


def test_bench_can_time_whole_file_jobs(tmp_path):
    """`flashvsr bench --file-io`: each pass decodes an H.264 input, upscales it and encodes the output."""
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--layers", "1", "--height", "128", "--width", "256", "--frames", "5",
            "--warmup", "0", "--repeats", "1", "--file-io", "--linears", "fp8", "--json", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    result = json.loads(out.read_text())
    assert result["config"]["file_io"] and result["fps"] > 0 and result["config"]["linears"] == "fp8"
    assert "output" not in result["stage_ms_per_8_frames"]  # frames went to the encoder, not to a buffer
    assert {"lq_proj", "dit", "decode"} <= set(result["stage_ms_per_8_frames"])


def test_without_pyav_the_cli_says_so_in_one_line():
    """PyAV is a dependency, but an install without it (some GPU machines) must get one line
    naming it, not a traceback from the error handler (a fresh process, as on such a machine)."""
    blocked = "import sys; sys.modules['av'] = None; from flashvsr import cli; "  # any `import av` raises ImportError
    args = ["bench", "--device", "cpu", "--layers", "1", "--frames", "5"]
    run = subprocess.run([sys.executable, "-c", blocked + f"sys.exit(cli.main({args!r}))"], capture_output=True, text=True)
    assert run.returncode != 0
    assert run.stderr.startswith("flashvsr: ") and "'av'" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
