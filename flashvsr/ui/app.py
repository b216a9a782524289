"""The web app: a FastAPI application serving the page (static/) and the HTTP API under /api.

    create_app(UIConfig(...))  →  FastAPI app; run it with uvicorn (see server.py)

Every error a user can cause comes back as JSON ``{"detail": "one line"}`` with a 4xx status,
which the page shows as it is.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from .. import __version__
from ..config import STABILIZE_MODES
from ..io import MediaError, probe
from ..jobs import DEFAULT_SCALE
from ..weights.loading import WeightsError
from .config import UIConfig
from .media import browser_playable, encode_png, read_frame
from .models import COLOR_FIXES, RELEASES, VARIANTS, ModelCache, ModelFolder, no_model_message, offered_folders
from .queue import DONE, JobQueue, JobRecord, JobSpec
from .requests import JobRequest, describe_plan, model_settings, output_formats, plan_request
from .uploads import Upload, UploadRejected, UploadStore
from .workspace import Workspace, new_id

STATIC_DIR = Path(__file__).parent / "static"
LOCAL_HOST_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]  # refuses DNS-rebinding host names
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SPARSE_RATIO_CHOICES = (1.5, 2.0)  # faster / the reference's
LOCAL_RANGE_CHOICES = (9, 11)  # sharper / more stable
PLAN_ERRORS = (MediaError, WeightsError, ValueError)


class Services:
    """The server's parts: workspace, uploads, job queue; ``close()`` stops and removes them."""

    def __init__(self, config: UIConfig):
        self.config = config
        self.workspace = Workspace(config.temp_parent)
        self.uploads = UploadStore(self.workspace, config.max_upload_bytes, config.max_duration_s)
        self.queue = JobQueue(self.workspace, ModelCache(config.device, config.dtype), config.threads)
        self._closed = False

    def model_folders(self) -> list[ModelFolder]:
        return offered_folders(self.config.weights)  # looked at every time: the bundled model may appear

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.queue.stop()
            self.workspace.remove()


def create_app(config: UIConfig) -> FastAPI:
    services = Services(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services.queue.start()
        try:
            yield
        finally:
            services.close()

    app = FastAPI(title="FlashVSR", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")  # fmt: skip
    app.state.services = services
    app.add_middleware(SameOriginWrites)
    if config.is_local_only:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOCAL_HOST_NAMES)
    _add_error_handlers(app)
    _add_page(app)
    _add_info(app, services)
    _add_uploads(app, services)
    _add_jobs(app, services)
    return app


# --------------------------------------------------------------------------------------------
# Errors and security


class SameOriginWrites:
    """Refuses uploads and jobs sent by other web sites (cross-site request forgery): browsers
    send an Origin header with them, scripts and curl send none."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != headers.get("host"):
                response = JSONResponse({"detail": "refused: this request came from another web site"}, 403)
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadRejected)
    async def upload_rejected(request: Request, e: UploadRejected):
        return JSONResponse({"detail": str(e)}, status_code=413 if e.too_large else 400)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, e: ClientDisconnect):  # an upload the browser gave up on
        return JSONResponse({"detail": "the client disconnected"}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, e: RequestValidationError):
        return JSONResponse({"detail": "; ".join(_field_error(err) for err in e.errors())}, status_code=422)


def _field_error(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
    return f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid request")


def _not_found(what: str, item_id: str) -> HTTPException:
    return HTTPException(404, f"no {what} {item_id!r} on this server (removed, or the server restarted)")


def _bad_request(services: Services, e: Exception) -> HTTPException:
    return HTTPException(400, services.workspace.redact(" ".join(str(e).split())))


# --------------------------------------------------------------------------------------------
# The page and what it shows first


def _add_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def _add_info(app: FastAPI, services: Services) -> None:
    @app.get("/api/info")
    def info():
        """Limits, model folders and the choices of every setting, with their defaults."""
        config, folders = services.config, services.model_folders()
        available = [f for f in folders if f.available]
        defaults = JobRequest(upload_id="").model_dump(exclude={"upload_id"})
        return {
            "version": __version__,
            "device": config.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            "limits": {"max_upload_bytes": config.max_upload_bytes, "max_duration_s": config.max_duration_s},
            "models": [f.describe() for f in folders],
            "default_model": str(available[0].path) if available else None,
            "no_model_message": None if available else no_model_message(),
            "loaded_model": services.queue.loaded_model(),
            "choices": {
                "release": ["auto", *RELEASES],
                "variant": list(VARIANTS),
                "color_fix": list(COLOR_FIXES),
                "stabilize": list(STABILIZE_MODES),
                "sparse_ratio": list(SPARSE_RATIO_CHOICES),
                "local_range": list(LOCAL_RANGE_CHOICES),
                "format": output_formats(),
            },
            "defaults": {**defaults, "scale": DEFAULT_SCALE},
        }


# --------------------------------------------------------------------------------------------
# Uploads


def _add_uploads(app: FastAPI, services: Services) -> None:
    uploads = services.uploads

    def find(upload_id: str) -> Upload:
        upload = uploads.get(upload_id)
        if upload is None:
            raise _not_found("upload", upload_id)
        return upload

    @app.post("/api/uploads", status_code=201)
    async def upload(request: Request, name: str = Query(description="the file's name; its extension matters")):
        """The request body is the file itself (not a form): it streams to disk under the size limit."""
        declared = request.headers.get("content-length")
        received = await uploads.receive(name, request.stream(), int(declared) if declared else None)
        return received.describe()

    @app.get("/api/uploads")
    def list_uploads():
        return {"uploads": [u.describe() for u in uploads.all()]}

    @app.get("/api/uploads/{upload_id}")
    def get_upload(upload_id: str):
        return find(upload_id).describe()

    @app.delete("/api/uploads/{upload_id}")
    def remove_upload(upload_id: str):
        find(upload_id)
        if services.queue.uses_upload(upload_id):
            raise HTTPException(409, "a queued or running job uses this upload; cancel it first")
        uploads.remove(upload_id)
        return {"removed": upload_id}

    @app.get("/api/uploads/{upload_id}/file")
    def upload_file(upload_id: str):
        item = find(upload_id)
        return FileResponse(item.path, filename=item.name, content_disposition_type="inline")

    @app.get("/api/uploads/{upload_id}/frames/{index}")
    def upload_frame(upload_id: str, index: int, width: int | None = Query(None, gt=0)):
        """Frame ``index`` as a PNG (upright), optionally shrunk to ``width`` pixels."""
        return _frame_response(services, find(upload_id).path, index, width)


def _frame_response(services: Services, path: Path, index: int, width: int | None) -> Response:
    try:
        image = read_frame(path, index)
    except MediaError as e:
        raise _bad_request(services, e) from None
    return Response(encode_png(image, width), media_type="image/png", headers={"Cache-Control": "max-age=3600"})


# --------------------------------------------------------------------------------------------
# Jobs


def _add_jobs(app: FastAPI, services: Services) -> None:
    queue = services.queue

    def upload_of(request: JobRequest) -> Upload:
        upload = services.uploads.get(request.upload_id)
        if upload is None:
            raise _not_found("upload", request.upload_id)
        return upload

    def checked(plan, *args):
        try:
            return plan(*args)
        except PLAN_ERRORS as e:
            raise _bad_request(services, e) from None

    def find(job_id: str) -> JobRecord:
        record = queue.record(job_id)
        if record is None:
            raise _not_found("job", job_id)
        return record

    @app.post("/api/plan")
    def plan(request: JobRequest):
        """What a job with these settings would write (output name, size, frames); nothing runs."""
        job = checked(plan_request, request, upload_of(request), services.workspace.jobs / "plan")
        return describe_plan(job)

    @app.post("/api/jobs", status_code=201)
    def create_job(request: JobRequest):
        """Plan a job (refused at once if anything is wrong) and queue it."""
        job_id = new_id()
        folder = services.workspace.jobs / job_id
        upload = upload_of(request)
        model = checked(model_settings, request, services.model_folders())
        job = checked(plan_request, request, upload, folder)
        folder.mkdir()
        spec = JobSpec(upload, model, job, request.model_dump(exclude={"upload_id"}))
        return queue.submit(job_id, spec, folder)

    @app.get("/api/jobs")
    def list_jobs():
        """Every job, newest first, with progress; and the model held in memory."""
        return {"jobs": queue.describe_all(), "loaded_model": queue.loaded_model()}

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str):
        find(job_id)
        return queue.describe(job_id)

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel_job(job_id: str):
        find(job_id)
        return queue.cancel(job_id)

    @app.delete("/api/jobs/{job_id}")
    def remove_job(job_id: str):
        """Delete a job and its files (a running job is cancelled first)."""
        find(job_id)
        queue.remove(job_id)
        return {"removed": job_id}

    @app.get("/api/jobs/{job_id}/result")
    def download(job_id: str):
        """The output as a download; image sequences come as one zip file."""
        find(job_id)
        found = queue.result_file(job_id)
        if found is None:
            raise HTTPException(409, "this job has no result (it is not done)")
        path, name = found
        return FileResponse(path, filename=name)

    @app.get("/api/jobs/{job_id}/file")
    def output_file(job_id: str):
        """The output video or image for the comparison player (inline, seekable)."""
        record = _done(find(job_id))
        return FileResponse(record.spec.job.output, content_disposition_type="inline",
                            filename=record.spec.job.output.name)  # fmt: skip

    @app.get("/api/jobs/{job_id}/frames/{index}")
    def output_frame(job_id: str, index: int, width: int | None = Query(None, gt=0)):
        """Frame ``index`` of the output as a PNG, optionally shrunk to ``width`` pixels."""
        return _frame_response(services, _done(find(job_id)).spec.job.output, index, width)

    @app.get("/api/jobs/{job_id}/compare")
    def compare(job_id: str):
        """How the page compares before and after: a synchronised video player when the browser
        plays both files, else decoded frames."""
        record = _done(find(job_id))
        return _comparison(record)


def _done(record: JobRecord) -> JobRecord:
    if record.state != DONE:
        raise HTTPException(409, "this job has no result (it is not done)")
    return record


def _comparison(record: JobRecord) -> dict:
    upload, output = record.spec.upload, probe(record.spec.job.output)
    video = browser_playable(upload.info) and browser_playable(output)
    return {
        "mode": "video" if video else "frames",
        "before": {
            "file_url": upload.describe()["file_url"],
            "frame_url": f"/api/uploads/{upload.id}/frames/{{index}}",
            "width": upload.info.width,
            "height": upload.info.height,
        },
        "after": {
            "file_url": f"/api/jobs/{record.id}/file",
            "frame_url": f"/api/jobs/{record.id}/frames/{{index}}",
            "width": output.width,
            "height": output.height,
        },
        "frames": output.frames,
        "fps": float(output.fps) if output.fps else None,
    }
