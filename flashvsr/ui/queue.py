"""The job queue: one worker thread runs one job at a time on the one loaded model.

A job is planned (every input and setting checked, the output size decided) when it is
submitted, so mistakes are refused at once; the worker then loads or reuses the model and
streams the video through it. Whatever a job does — fails, is cancelled, runs out of memory —
the worker records it on that job and goes on with the next.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import av
import torch

from ..io import IMAGE, IMAGE_SEQUENCE, VIDEO, MediaError
from ..io.images import DEFAULT_IMAGE_FORMAT, IMAGE_FORMATS, IMAGE_SUFFIXES
from ..jobs import Job, JobCancelled, JobResult, run_job
from ..weights.loading import WeightsError
from .models import ModelCache, ModelSettings, ModelUse
from .uploads import Upload
from .workspace import Workspace, remove_folder

QUEUED, LOADING, RUNNING, DONE, FAILED, CANCELLED = "queued", "loading", "running", "done", "failed", "cancelled"
ACTIVE_STATES = frozenset({QUEUED, LOADING, RUNNING})
USER_ERRORS = (MediaError, WeightsError, ValueError, OSError, av.error.FFmpegError)  # messages meant for users
STOP_TIMEOUT_S = 30.0  # how long shutdown waits for a running job to reach its next frame
ZIP_SUFFIX = ".zip"

log = logging.getLogger("flashvsr.ui")


@dataclass(frozen=True)
class JobSpec:
    """A planned job: the input, the model, and what flashvsr.jobs will write."""

    upload: Upload
    model: ModelSettings
    job: Job
    options: dict  # the request's settings, shown with the job


class JobRecord:
    """One job's life: its state, progress and outcome. Changed only under the queue's lock."""

    def __init__(self, job_id: str, spec: JobSpec, folder: Path):
        self.id = job_id
        self.spec = spec
        self.folder = folder
        self.state = QUEUED
        self.cancel = threading.Event()
        self.discard = False  # removed while running: delete once it stops
        self.frames_done = 0
        self.frames_total = spec.job.input.frames
        self.created = time.time()
        self.running_since: float | None = None  # monotonic, after the model is ready
        self.elapsed_s: float | None = None  # frozen when the job ends
        self.model: dict | None = None
        self.result: JobResult | None = None
        self.error: str | None = None
        self.warnings: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def describe(self, queue_position: int | None) -> dict:
        job = self.spec.job
        return {
            "id": self.id,
            "state": self.state,
            "cancel_requested": self.cancel.is_set() and self.active,
            "queue_position": queue_position,
            "input": {
                "upload_id": self.spec.upload.id,
                "name": self.spec.upload.name,
                "width": job.input.width,
                "height": job.input.height,
            },
            "output": {
                "name": job.output.name,
                "kind": job.output_kind,
                "format": output_format(job),
                "width": job.geometry.out_w,
                "height": job.geometry.out_h,
            },
            "options": self.spec.options,
            "progress": self._progress(),
            "model": self.model,
            "error": self.error,
            "warnings": list(self.warnings),
            "result": self._result(),
            "created": self.created,
        }

    def _progress(self) -> dict:
        elapsed = self.elapsed_s
        if elapsed is None and self.running_since is not None:
            elapsed = time.monotonic() - self.running_since
        fps = self.frames_done / elapsed if elapsed and self.frames_done else None
        remaining = self.frames_total - self.frames_done
        eta = remaining / fps if fps and self.state == RUNNING else None
        return {"done": self.frames_done, "total": self.frames_total, "fps": fps, "eta_s": eta, "elapsed_s": elapsed}

    def _result(self) -> dict | None:
        r = self.result
        if r is None or self.state != DONE:
            return None
        return {
            "frames": r.frames,
            "width": r.out_size[0],
            "height": r.out_size[1],
            "seconds": r.seconds,
            "fps": r.fps,
            "audio_streams": r.audio_streams,
            "bytes": _size_on_disk(self.spec.job.output),
            "download_url": f"/api/jobs/{self.id}/result",
            "file_url": f"/api/jobs/{self.id}/file",
            "frame_url": f"/api/jobs/{self.id}/frames/{{index}}",
        }


class JobQueue:
    def __init__(self, workspace: Workspace, models: ModelCache, threads: int | None = None):
        self.workspace = workspace
        self.models = models
        self.threads = threads
        self._records: dict[str, JobRecord] = {}  # in submission order
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._zip_lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="flashvsr-ui-worker", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Cancel everything and wait (a bounded time) for the worker to let go of its files."""
        with self._lock:
            for record in self._records.values():
                record.cancel.set()
                if record.state == QUEUED:
                    self._finish(record, CANCELLED)
        self._pending.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout)

    # -- the API's side ----------------------------------------------------------------------
    def submit(self, job_id: str, spec: JobSpec, folder: Path) -> dict:
        record = JobRecord(job_id, spec, folder)
        with self._lock:
            self._records[job_id] = record
        self._pending.put(job_id)
        return self.describe(job_id)

    def describe(self, job_id: str) -> dict | None:
        with self._lock:
            record = self._records.get(job_id)
            return None if record is None else record.describe(self._position(record))

    def describe_all(self) -> list[dict]:
        """Running and queued jobs in the order they run, then finished ones, newest first."""
        with self._lock:
            records = list(self._records.values())
            ordered = [r for r in records if r.active] + [r for r in reversed(records) if not r.active]
            return [r.describe(self._position(r)) for r in ordered]

    def record(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._records.get(job_id)

    def cancel(self, job_id: str) -> dict | None:
        """Queued jobs are cancelled at once; a running one stops at its next frame."""
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                return None
            if record.active:
                record.cancel.set()
                if record.state == QUEUED:
                    self._finish(record, CANCELLED)
            return record.describe(self._position(record))

    def remove(self, job_id: str) -> bool:
        """Forget a job and delete its files (a running job is cancelled and deleted when it stops)."""
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                return False
            record.cancel.set()
            if record.state in (LOADING, RUNNING):
                record.discard = True
                return True
            del self._records[job_id]
        remove_folder(record.folder)
        return True

    def uses_upload(self, upload_id: str) -> bool:
        with self._lock:
            return any(r.active and r.spec.upload.id == upload_id for r in self._records.values())

    def loaded_model(self) -> dict | None:
        return self.models.loaded

    def result_file(self, job_id: str) -> tuple[Path, str] | None:
        """(file, download name) of a finished job; image sequences are zipped on first request."""
        record = self.record(job_id)
        if record is None or record.state != DONE:
            return None
        output = record.spec.job.output
        if record.spec.job.output_kind != IMAGE_SEQUENCE:
            return output, output.name
        archive = output.with_name(output.name + ZIP_SUFFIX)
        with self._zip_lock:
            if not archive.exists():
                _zip_folder(output, archive)
        return archive, archive.name

    def _position(self, record: JobRecord) -> int | None:
        """1 for the next job to run; None unless queued."""
        if record.state != QUEUED:
            return None
        queued = [r for r in self._records.values() if r.state == QUEUED]
        return queued.index(record) + 1

    # -- the worker's side -------------------------------------------------------------------
    def _work(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while (job_id := self._pending.get()) is not None:
            record = self._claim(job_id)
            if record is not None:
                self._run(record)

    def _claim(self, job_id: str) -> JobRecord | None:
        with self._lock:
            record = self._records.get(job_id)
            if record is None or record.state != QUEUED:
                return None  # cancelled or removed while it waited
            record.state = LOADING
            return record

    def _run(self, record: JobRecord) -> None:
        try:
            use = self.models.acquire(record.spec.model)
            self._started(record, use)
            result = run_job(use.upscaler, record.spec.job, progress=lambda d, t: self._progress(record, d, t),
                             cancel=record.cancel)  # fmt: skip
        except JobCancelled:
            self._end(record, CANCELLED)
        except USER_ERRORS as e:
            self._end(record, FAILED, error=self.workspace.redact(_one_line(e)))
        except Exception as e:  # the worker outlives any job: record the failure, start clean
            log.exception("job %s failed", record.id)
            self.models.forget()
            message = self.workspace.redact(_one_line(e))
            self._end(record, FAILED, error=f"internal error: {type(e).__name__}: {message}")
        else:
            self._end(record, DONE, result=result)

    def _started(self, record: JobRecord, use: ModelUse) -> None:
        with self._lock:
            record.model = {"summary": self.workspace.redact(use.summary), "reused": use.reused,
                            "load_seconds": use.load_seconds}  # fmt: skip
            record.state = RUNNING
            record.running_since = time.monotonic()
        if record.cancel.is_set():  # cancelled while the model loaded
            raise JobCancelled("cancelled")

    def _progress(self, record: JobRecord, done: int, total: int) -> None:
        with self._lock:
            record.frames_done, record.frames_total = done, total

    def _end(self, record: JobRecord, state: str, error: str | None = None, result: JobResult | None = None) -> None:
        with self._lock:
            self._finish(record, state, error, result)
            discard = record.discard
            if discard:
                self._records.pop(record.id, None)
        if discard:
            remove_folder(record.folder)

    def _finish(self, record: JobRecord, state: str, error: str | None = None, result: JobResult | None = None):
        record.state, record.error, record.result = state, error, result
        if result is not None:
            record.warnings = tuple(self.workspace.redact(w) for w in result.warnings)
        if record.running_since is not None:
            record.elapsed_s = time.monotonic() - record.running_since


def output_format(job: Job) -> str:
    """The codec (videos) or image format (images, sequences) a job writes."""
    if job.output_kind == VIDEO:
        return job.settings.codec
    suffix = (
        job.output.suffix
        if job.output_kind == IMAGE
        else IMAGE_FORMATS[job.settings.image_format or DEFAULT_IMAGE_FORMAT]
    )
    return IMAGE_SUFFIXES[suffix.lower()].lower().replace("jpeg", "jpg")


def _zip_folder(folder: Path, archive: Path) -> None:
    """Store (no compression: PNG/JPEG/WebP are compressed already) into a partial name, then rename."""
    partial = archive.with_name("." + archive.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as z:
        for item in sorted(folder.iterdir()):
            z.write(item, f"{folder.name}/{item.name}")
    partial.replace(archive)


def _size_on_disk(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
