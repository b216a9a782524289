"""``flashvsr ui``: a local web app for upscaling videos and images, and its HTTP API.

    flashvsr/ui/
        config.py     UIConfig: address, model folders, limits (made by the CLI)
        app.py        the FastAPI app: the page and /api routes
        uploads.py    uploads streamed to disk under limits, probed
        requests.py   a job request → flashvsr.jobs settings and a planned job
        queue.py      the job queue: one worker thread, one loaded model
        models.py     model settings and the model cache
        media.py      media properties, single frames, browser playability
        workspace.py  the per-server temporary folder
        server.py     binding and running with uvicorn
        static/       the page: index.html, app.js, style.css (no build step)

Needs the ``ui`` extra (FastAPI, uvicorn): ``pip install "flashvsr[ui]"``.
"""

from .config import UIConfig

__all__ = ["UIConfig"]
