"""The web UI's HTTP API without a browser: uploads and their properties, planned output sizes,
jobs that run, queue, cancel, fail and are removed, downloads, limits, security, clean-up, and
the ``flashvsr ui`` command itself."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web UI extra is not installed: pip install -e '.[ui]'")

from fastapi.testclient import TestClient

from flashvsr import cli
from flashvsr.io import probe
from flashvsr.ui.app import create_app
from flashvsr.ui.config import UIConfig, exposure_warning

from .media_helpers import decoded_frames, write_images, write_video
from .ui_helpers import URL_LINE, api

pytest_plugins = ["tests.media_fixtures"]  # fixtures: weights_dir

BASE_URL = "http://127.0.0.1"  # the app only answers to local host names when bound locally
JOB_TIMEOUT_S = 120.0
POLL_S = 0.05
ACTIVE = ("queued", "loading", "running")
LONG_FRAMES = 600  # long enough that a cancel always lands while it runs


@pytest.fixture
def make_client(tmp_path, weights_dir):
    """A started app (worker running) for a config; stopped, and its temp folder removed, after."""
    clients = []

    def make(**overrides) -> TestClient:
        settings = {"weights": (weights_dir,), "threads": 1, "temp_parent": tmp_path / "server", **overrides}
        client = TestClient(create_app(UIConfig(**settings)), base_url=BASE_URL)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """12 frames, 48×32, 25 fps, with an AAC track."""
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", 12, 48, 32, audio="aac")


def upload(client: TestClient, path: Path, name: str | None = None) -> dict:
    response = client.post("/api/uploads", params={"name": name or path.name}, content=path.read_bytes())
    assert response.status_code == 201, response.text
    return response.json()


def create_job(client: TestClient, upload_id: str, **settings) -> dict:
    response = client.post("/api/jobs", json={"upload_id": upload_id, **settings})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for(client: TestClient, job_id: str, until=lambda job: job["state"] not in ACTIVE) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if until(job):
            return job
        time.sleep(POLL_S)
    raise AssertionError(f"job {job_id} still {job['state']} after {JOB_TIMEOUT_S} s")


def workspace(client: TestClient) -> Path:
    return client.app.state.services.workspace.root


# --------------------------------------------------------------------------------------------
# What the page shows first


def test_info_lists_model_folders_choices_and_limits(make_client, weights_dir):
    client = make_client(max_upload_bytes=5_000_000, max_duration_s=30)
    info = client.get("/api/info").json()
    assert info["default_model"] == str(weights_dir) and info["no_model_message"] is None
    assert info["models"][0] == {"path": str(weights_dir), "label": "tiny-model", "available": True, "problem": None}
    assert info["limits"] == {"max_upload_bytes": 5_000_000, "max_duration_s": 30}
    assert info["choices"]["release"] == ["auto", "v1", "v1.1"] and info["choices"]["variant"] == ["tiny", "full"]
    assert info["choices"]["color_fix"] == ["adain", "wavelet", "none"]
    assert "h264" in info["choices"]["format"]["video"] and "png" in info["choices"]["format"]["image"]
    assert info["defaults"]["sparse_ratio"] == 2.0 and info["defaults"]["local_range"] == 11
    assert info["loaded_model"] is None  # nothing loads before the first job


def test_no_model_folder_gives_a_clear_message(make_client, monkeypatch, tmp_path, clip):
    monkeypatch.setattr("flashvsr.ui.models.BUNDLED_DIR", tmp_path / "not-installed")
    client = make_client(weights=())
    info = client.get("/api/info").json()
    assert info["default_model"] is None
    assert "No model folder is available" in info["no_model_message"] and "--weights" in info["no_model_message"]
    assert info["models"][0]["available"] is False
    item = upload(client, clip)
    refused = client.post("/api/jobs", json={"upload_id": item["id"]})
    assert refused.status_code == 400 and "No model folder is available" in refused.json()["detail"]
    missing = client.post("/api/jobs", json={"upload_id": item["id"], "weights": str(tmp_path / "nowhere")})
    assert missing.status_code == 400 and "nowhere: no such folder" in missing.json()["detail"]
    assert client.get("/api/jobs").json()["jobs"] == []


# --------------------------------------------------------------------------------------------
# Uploads


def test_upload_shows_properties_thumbnail_and_output_size(client, tmp_path):
    video = write_video(tmp_path / "odd size.mp4", 10, 50, 30, audio="aac")
    item = upload(client, video)
    assert item["name"] == "odd size.mp4" and item["kind"] == "video"
    assert (item["width"], item["height"], item["frames"], item["fps"], item["fps_exact"]) == (50, 30, 10, 25.0, "25/1")
    assert item["duration"] == pytest.approx(0.4, abs=0.05)
    assert item["audio"] == [{"codec": "aac", "sample_rate": 48000, "channels": 2, "language": "und"}]
    assert item["playable"] is True and item["bytes"] == video.stat().st_size
    thumbnail = Image.open(io.BytesIO(client.get(item["thumbnail_url"]).content))
    assert thumbnail.size == (50, 30)  # never enlarged
    assert client.get("/api/uploads").json()["uploads"][0]["id"] == item["id"]

    def plan(**settings) -> dict:
        response = client.post("/api/plan", json={"upload_id": item["id"], **settings})
        assert response.status_code == 200, response.text
        return response.json()

    # H.264 needs even sizes: 75×45 becomes 76×46; PNG frames keep 75×45
    assert plan(scale=1.5) | {"scale": 0} == {"output_name": "odd size_x1.5.mp4", "output_kind": "video",
                                              "width": 76, "height": 46, "frames": 10, "scale": 0}  # fmt: skip
    png = plan(scale=1.5, format="png")
    assert (png["output_name"], png["output_kind"], png["width"], png["height"]) == (
        "odd size_x1_5_png", "image sequence", 75, 45)  # fmt: skip
    assert (plan(width=100)["width"], plan(width=100)["height"]) == (100, 60)
    assert plan()["width"] == 200  # the default scale is 4
    smaller = client.post("/api/plan", json={"upload_id": item["id"], "width": 20})
    assert smaller.status_code == 400 and "would be smaller than the input" in smaller.json()["detail"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"a shopping list\n", "notes.txt: not a video or image FFmpeg can read"),
        ("fake.mp4", b"\x00" * 4096, "fake.mp4: not a video or image FFmpeg can read"),
        ("photo.png", b"not a png", "photo.png: not an image Pillow can read"),
        ("empty.mp4", b"", "empty.mp4: the file is empty"),
        ("../../escape.txt", b"text", "escape.txt: not a video or image"),
    ],
)
def test_bad_uploads_are_refused_with_a_message_and_leave_nothing(client, name, content, message):
    response = client.post("/api/uploads", params={"name": name}, content=content)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith(message)
    assert str(workspace(client)) not in detail  # users see their file name, not the server's paths
    assert list((workspace(client) / "uploads").iterdir()) == []
    assert client.get("/api/uploads").json()["uploads"] == []


def test_upload_limits_are_settings(make_client, clip):
    small = make_client(max_upload_bytes=1000)
    too_big = small.post("/api/uploads", params={"name": "clip.mp4"}, content=clip.read_bytes())
    assert too_big.status_code == 413
    assert too_big.json()["detail"] == "clip.mp4: larger than this server's upload limit of 0.000953674 MiB " \
                                       "(start it with a larger --max-upload-mb)"  # fmt: skip
    streamed = small.post("/api/uploads", params={"name": "clip.mp4"}, content=iter([clip.read_bytes()]))
    assert streamed.status_code == 413  # no Content-Length: counted while it streams
    short = make_client(max_duration_s=0.25)
    too_long = short.post("/api/uploads", params={"name": "clip.mp4"}, content=clip.read_bytes())
    assert too_long.status_code == 400
    assert too_long.json()["detail"].startswith("clip.mp4: 0.5 s long; this server accepts videos up to 0.25 s")
    for client in (small, short):
        assert list((workspace(client) / "uploads").iterdir()) == []


def test_uploaded_and_output_files_can_be_seeked(client, clip):
    item = upload(client, clip)
    part = client.get(item["file_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == clip.read_bytes()[100:200]  # video players seek this way


# --------------------------------------------------------------------------------------------
# Jobs


def test_job_runs_with_progress_and_downloads_the_upscaled_video(client, clip, tmp_path):
    item = upload(client, clip)
    created = create_job(client, item["id"], scale=2)
    assert created["state"] in ACTIVE and created["output"] == {
        "name": "clip_x2.mp4",
        "kind": "video",
        "format": "h264",
        "width": 96,
        "height": 64,
    }
    seen = []
    job = wait_for(client, created["id"], lambda j: seen.append(j["progress"]["done"]) or j["state"] not in ACTIVE)
    assert job["state"] == "done", job["error"]
    assert seen == sorted(seen)  # progress only moves forward
    assert job["progress"]["done"] == job["progress"]["total"] == 12 and job["progress"]["fps"] > 0
    assert job["result"]["frames"] == 12 and (job["result"]["width"], job["result"]["height"]) == (96, 64)
    assert job["result"]["audio_streams"] == 1 and job["model"]["reused"] is False
    download = client.get(job["result"]["download_url"])
    assert download.headers["content-disposition"] == 'attachment; filename="clip_x2.mp4"'
    saved = tmp_path / "downloaded.mp4"
    saved.write_bytes(download.content)
    info = probe(saved)
    assert (info.frames, info.width, info.height, len(info.audio)) == (12, 96, 64, 1)
    assert client.get("/api/jobs").json()["loaded_model"]["name"] == "tiny-model"


def test_model_stays_loaded_and_reloads_only_for_new_weights(client, clip):
    item = upload(client, clip)
    first = wait_for(client, create_job(client, item["id"], scale=1)["id"])
    engine_change = wait_for(client, create_job(client, item["id"], scale=1, color_fix="wavelet", seed=3)["id"])
    decoder_change = wait_for(client, create_job(client, item["id"], scale=1, variant="full")["id"])
    assert [j["state"] for j in (first, engine_change, decoder_change)] == ["done"] * 3
    assert [j["model"]["reused"] for j in (first, engine_change, decoder_change)] == [False, True, False]
    assert engine_change["options"]["color_fix"] == "wavelet" and engine_change["options"]["seed"] == 3
    frames = {j["id"]: decoded_frames(Path(client.app.state.services.queue.record(j["id"]).spec.job.output))
              for j in (first, engine_change)}  # fmt: skip
    assert not np.array_equal(frames[first["id"]][0], frames[engine_change["id"]][0])  # the new settings applied


def test_images_and_image_sequences(client, clip):
    photo = write_images(Path(workspace(client)).parent / "photos", 1, 40, 24)[0]
    image_job = wait_for(client, create_job(client, upload(client, photo)["id"], scale=2)["id"])
    assert image_job["state"] == "done" and image_job["output"]["name"] == f"{photo.stem}_x2.png"
    assert image_job["output"]["format"] == "png"  # "auto" keeps an image's own format
    assert Image.open(io.BytesIO(client.get(image_job["result"]["download_url"]).content)).size == (80, 48)
    frame = Image.open(io.BytesIO(client.get(f"/api/jobs/{image_job['id']}/frames/0").content))
    assert frame.size == (80, 48)
    assert client.get(f"/api/jobs/{image_job['id']}/compare").json()["mode"] == "frames"

    sequence_job = wait_for(client, create_job(client, upload(client, clip)["id"], scale=2, format="jpg")["id"])
    assert sequence_job["state"] == "done" and sequence_job["output"]["kind"] == "image sequence"
    assert sequence_job["output"]["format"] == "jpg"
    archive = zipfile.ZipFile(io.BytesIO(client.get(sequence_job["result"]["download_url"]).content))
    names = sorted(archive.namelist())
    assert names == [f"clip_x2_jpg/{i:06d}.jpg" for i in range(12)]
    assert Image.open(archive.open(names[-1])).size == (96, 64)
    assert client.get(f"/api/jobs/{sequence_job['id']}/frames/11").status_code == 200
    assert client.get(f"/api/jobs/{sequence_job['id']}/frames/12").status_code == 400


def test_comparison_uses_the_browser_player_only_for_playable_files(client, clip):
    item = upload(client, clip)
    h264 = wait_for(client, create_job(client, item["id"], scale=2)["id"])
    ffv1 = wait_for(client, create_job(client, item["id"], scale=2, format="ffv1")["id"])
    playable = client.get(f"/api/jobs/{h264['id']}/compare").json()
    assert playable["mode"] == "video" and playable["frames"] == 12 and playable["fps"] == 25
    assert (playable["before"]["width"], playable["after"]["width"]) == (48, 96)
    assert client.get(f"/api/jobs/{ffv1['id']}/compare").json()["mode"] == "frames"  # browsers cannot play FFV1
    before = Image.open(io.BytesIO(client.get(f"/api/uploads/{item['id']}/frames/5").content))
    after = Image.open(io.BytesIO(client.get(f"/api/jobs/{ffv1['id']}/frames/5").content))
    assert (before.size, after.size) == ((48, 32), (96, 64))
    ranged = client.get(playable["after"]["file_url"], headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.content) == 10


def test_cancel_a_queued_and_a_running_job_then_the_next_job_runs(client, tmp_path, clip):
    long_clip = write_video(tmp_path / "long.mp4", LONG_FRAMES, 64, 48)
    running = create_job(client, upload(client, long_clip)["id"], scale=2)
    queued = create_job(client, upload(client, clip)["id"], scale=2)
    assert queued["state"] == "queued" and queued["queue_position"] == 1
    cancelled = client.post(f"/api/jobs/{queued['id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["queue_position"] is None

    wait_for(client, running["id"], lambda j: j["progress"]["done"] > 0)
    client.post(f"/api/jobs/{running['id']}/cancel")
    stopped = wait_for(client, running["id"])
    assert (
        stopped["state"] == "cancelled" and 0 < stopped["progress"]["done"] < LONG_FRAMES and stopped["result"] is None
    )
    assert list((workspace(client) / "jobs" / running["id"]).iterdir()) == []  # the partial output is gone
    assert client.get(f"/api/jobs/{running['id']}/result").status_code == 409
    assert (
        client.post(f"/api/jobs/{running['id']}/cancel").json()["state"] == "cancelled"
    )  # cancelling again is harmless

    after = wait_for(client, create_job(client, upload(client, clip)["id"], scale=2)["id"])
    assert after["state"] == "done" and after["model"]["reused"] is True


def test_a_failed_job_does_not_break_the_next(client, tmp_path, clip, weights_dir):
    broken = tmp_path / "broken-model"  # a download that stopped half-way
    broken.mkdir()
    (broken / "config.json").write_bytes((weights_dir / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes((weights_dir / "model.safetensors").read_bytes()[:1000])
    item = upload(client, clip)
    failed = wait_for(client, create_job(client, item["id"], scale=2, weights=str(broken))["id"])
    assert failed["state"] == "failed" and failed["error"].startswith(str(broken / "model.safetensors")), failed
    assert failed["result"] is None and client.get(f"/api/jobs/{failed['id']}/result").status_code == 409
    good = wait_for(client, create_job(client, item["id"], scale=2)["id"])
    assert good["state"] == "done" and good["result"]["frames"] == 12


def test_removing_jobs_and_uploads_deletes_their_files(client, clip):
    item = upload(client, clip)
    upload_folder = workspace(client) / "uploads" / item["id"]
    job = create_job(client, item["id"], scale=2)
    refused = client.delete(f"/api/uploads/{item['id']}")
    assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"]
    wait_for(client, job["id"])
    job_folder = workspace(client) / "jobs" / job["id"]
    assert job_folder.is_dir()
    assert client.delete(f"/api/jobs/{job['id']}").json() == {"removed": job["id"]}
    assert not job_folder.exists() and client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/api/uploads/{item['id']}").status_code == 200
    assert not upload_folder.exists() and client.get(f"/api/uploads/{item['id']}").status_code == 404
    missing = client.post("/api/jobs", json={"upload_id": item["id"]})
    assert missing.status_code == 404 and "no upload" in missing.json()["detail"]


def test_bad_settings_are_refused_in_one_line(client, clip):
    item = upload(client, clip)

    def refused(status: int, **settings) -> str:
        response = client.post("/api/jobs", json={"upload_id": item["id"], **settings})
        assert response.status_code == status, response.text
        return response.json()["detail"]

    assert refused(422, scale=0.5) == "scale: Input should be greater than or equal to 1"
    assert refused(422, color_fix="sepia").startswith("color_fix: Input should be 'adain', 'wavelet' or 'none'")
    assert refused(422, colour="red").startswith("colour: Extra inputs")
    assert refused(400, format="gif").startswith("unknown output format 'gif'")
    assert refused(400, scale=2, width=100) == "give either a scale or a target width/height, not both"
    assert client.get("/api/jobs").json()["jobs"] == []


def test_requests_from_other_web_sites_are_refused(client, clip):
    forged = client.post("/api/uploads", params={"name": "clip.mp4"}, content=clip.read_bytes(),
                         headers={"Origin": "http://attacker.example"})  # fmt: skip
    assert forged.status_code == 403
    same_site = client.post("/api/uploads", params={"name": "clip.mp4"}, content=clip.read_bytes(),
                            headers={"Origin": BASE_URL})  # fmt: skip
    assert same_site.status_code == 201
    rebound = client.get("/api/info", headers={"Host": "attacker.example"})  # DNS rebinding
    assert rebound.status_code == 400


def test_the_page_and_its_scripts_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_stopping_the_server_cancels_jobs_and_removes_every_file(make_client, tmp_path):
    client = make_client()
    long_clip = write_video(tmp_path / "long.mp4", LONG_FRAMES, 64, 48)
    job = create_job(client, upload(client, long_clip)["id"], scale=2)
    wait_for(client, job["id"], lambda j: j["state"] == "running")
    root = workspace(client)
    started = time.monotonic()
    client.__exit__(None, None, None)
    assert not root.exists() and time.monotonic() - started < JOB_TIMEOUT_S


# --------------------------------------------------------------------------------------------
# flashvsr ui


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["ui", "--help"])
    text = capsys.readouterr().out
    for option in ("--host", "--port", "--weights", "--device", "--dtype", "--threads", "--max-upload-mb",
                   "--max-duration", "--temp-dir", "--open"):  # fmt: skip
        assert option in text
    assert "127.0.0.1" in text and "examples:" in text


def test_missing_web_dependencies_say_how_to_install_them(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
    monkeypatch.delitem(sys.modules, "flashvsr.ui.server", raising=False)
    assert cli.main(["ui"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ('flashvsr: error: flashvsr ui needs the web UI dependencies (uvicorn is missing): '
                   'pip install "flashvsr[ui]"  (in a checkout: pip install -e ".[ui]")')  # fmt: skip


def test_listening_beyond_this_machine_is_warned_about():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_warning(host, 7860) is None
    warning = exposure_warning("0.0.0.0", 7860)
    assert "beyond this machine" in warning and "no login" in warning


def test_the_command_serves_warns_and_cleans_up(tmp_path, weights_dir):
    """The real command: --host 0.0.0.0 warns, the API answers, Ctrl-C removes the temp folder."""
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "flashvsr", "ui", "--host", "0.0.0.0", "--port", "0",
                                   "--weights", str(weights_dir), "--temp-dir", str(tmp_path / "tmp")],
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not URL_LINE.search(log.read_text()) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        found = URL_LINE.search(log.read_text())
        assert found, log.read_text()
        port = found.group(1).rstrip("/").rsplit(":", 1)[1]
        status, info = api(f"http://127.0.0.1:{port}", "GET", "/api/info")
        assert status == 200 and info["default_model"] == str(weights_dir)
        assert len(list((tmp_path / "tmp").iterdir())) == 1  # the server's own folder
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(30)
    text = log.read_text()
    assert "flashvsr: warning: listening on 0.0.0.0" in text and "no login" in text
    assert code == 0 and "stopped; its temporary files were removed" in text
    assert list((tmp_path / "tmp").iterdir()) == []
