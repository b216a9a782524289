"""The per-server temporary folder: every upload and output lives here, and it is removed on exit.

<temp>/flashvsr-ui-XXXX/
    uploads/<upload id>/<name>      what the user uploaded, under a cleaned-up name
    jobs/<job id>/<output name>     what a job wrote (and a zip of image-sequence outputs)
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from pathlib import Path

ID_BYTES = 6  # 12 hex digits: ids are not guessable from one another
MAX_NAME_CHARS = 120
UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ()\[\]+]")
DEFAULT_NAME = "upload"


def new_id() -> str:
    return secrets.token_hex(ID_BYTES)


def safe_name(name: str) -> str:
    """A file name that cannot leave its folder or hide itself: no paths, no leading dots."""
    base = Path(name.replace("\\", "/")).name
    cleaned = UNSAFE_NAME_CHARS.sub("_", base).lstrip(". ").strip()
    if len(cleaned) > MAX_NAME_CHARS:
        stem, suffix = Path(cleaned).stem, Path(cleaned).suffix[: MAX_NAME_CHARS // 2]
        cleaned = stem[: MAX_NAME_CHARS - len(suffix)] + suffix
    return cleaned or DEFAULT_NAME


class Workspace:
    """One temporary folder per server; ``remove()`` deletes it with everything inside."""

    def __init__(self, parent: Path | None = None):
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="flashvsr-ui-", dir=parent))
        self.uploads = self.root / "uploads"
        self.jobs = self.root / "jobs"
        self.uploads.mkdir()
        self.jobs.mkdir()

    def new_upload_folder(self, upload_id: str) -> Path:
        folder = self.uploads / upload_id
        folder.mkdir()
        return folder

    def new_job_folder(self, job_id: str) -> Path:
        folder = self.jobs / job_id
        folder.mkdir()
        return folder

    def redact(self, text: str) -> str:
        """A message without this server's temporary paths (users see their own file names)."""
        for folder in (self.uploads, self.jobs):
            text = re.sub(re.escape(str(folder)) + r"/[0-9a-f]+/", "", text)
        return text.replace(str(self.root), "")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
