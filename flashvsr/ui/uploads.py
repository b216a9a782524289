"""Uploaded inputs: streamed to the workspace under a size limit, probed, and kept until removed."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..io import IMAGE, MediaError, MediaInfo, probe
from .config import MIB
from .media import browser_playable, describe_media
from .workspace import Workspace, new_id, remove_folder, safe_name


class UploadRejected(Exception):
    """An upload that is not kept; the message is for the user."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class Upload:
    id: str
    name: str  # the user's file name, cleaned up
    path: Path
    info: MediaInfo
    size_bytes: int

    def describe(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "bytes": self.size_bytes,
            **describe_media(self.info),
            "playable": browser_playable(self.info),
            "file_url": f"/api/uploads/{self.id}/file",
            "thumbnail_url": f"/api/uploads/{self.id}/frames/0?width=320",
        }


class UploadStore:
    def __init__(self, workspace: Workspace, max_bytes: int, max_duration_s: float):
        self.workspace = workspace
        self.max_bytes = max_bytes
        self.max_duration_s = max_duration_s
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()

    async def receive(self, name: str, chunks: AsyncIterator[bytes], declared_bytes: int | None) -> Upload:
        """Write an upload's bytes, probe it, and keep it; anything refused leaves no file behind."""
        name = safe_name(name)
        if declared_bytes is not None and declared_bytes > self.max_bytes:
            raise self._too_large(name)
        upload_id = new_id()
        folder = self.workspace.new_upload_folder(upload_id)
        try:
            path = folder / name
            size = await self._write(chunks, path)
            info = await anyio.to_thread.run_sync(self._checked_probe, path, name)
        except BaseException:
            remove_folder(folder)
            raise
        upload = Upload(upload_id, name, path, info, size)
        with self._lock:
            self._uploads[upload_id] = upload
        return upload

    async def _write(self, chunks: AsyncIterator[bytes], path: Path) -> int:
        written = 0
        async with await anyio.open_file(path, "wb") as f:
            async for chunk in chunks:
                written += len(chunk)
                if written > self.max_bytes:
                    raise self._too_large(path.name)
                await f.write(chunk)
        if written == 0:
            raise UploadRejected(f"{path.name}: the file is empty")
        return written

    def _checked_probe(self, path: Path, name: str) -> MediaInfo:
        try:
            info = probe(path)
        except MediaError as e:
            raise UploadRejected(self.workspace.redact(str(e))) from None
        seconds = media_seconds(info)
        if seconds > self.max_duration_s:
            raise UploadRejected(
                f"{name}: {seconds:.1f} s long; this server accepts videos up to {self.max_duration_s:g} s "
                f"(start it with a larger --max-duration)"
            )
        return info

    def _too_large(self, name: str) -> UploadRejected:
        limit = self.max_bytes / MIB
        return UploadRejected(
            f"{name}: larger than this server's upload limit of {limit:g} MiB (start it with a larger --max-upload-mb)",
            too_large=True,
        )

    def get(self, upload_id: str) -> Upload | None:
        with self._lock:
            return self._uploads.get(upload_id)

    def all(self) -> list[Upload]:
        with self._lock:
            return list(self._uploads.values())

    def remove(self, upload_id: str) -> bool:
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
        if upload is not None:
            remove_folder(upload.path.parent)
        return upload is not None


def media_seconds(info: MediaInfo) -> float:
    """How long a video plays (images: zero)."""
    if info.kind == IMAGE:
        return 0.0
    if info.duration is not None:
        return info.duration
    return info.frames / info.fps if info.fps else 0.0
