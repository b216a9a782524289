"""The curation manifest: one JSON line per segment of a video, image sequence or photo."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

KINDS = ("video", "sequence", "image")


@dataclass(frozen=True)
class Segment:
    path: str  # relative to the data root
    kind: str  # "video", "sequence" (a folder of frames) or "image"
    start: int = 0  # first frame
    frames: int = 1
    width: int = 0
    height: int = 0
    fps: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    keep: bool = True
    reasons: tuple[str, ...] = ()  # why a segment was dropped

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(line: str) -> "Segment":
        d = json.loads(line)
        d["reasons"] = tuple(d.get("reasons", ()))
        return Segment(**d)


def read_manifest(path: str | Path, kept_only: bool = True) -> list[Segment]:
    segments = [Segment.from_json(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [s for s in segments if s.keep] if kept_only else segments


def write_manifest(path: str | Path, segments: Iterable[Segment]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(s.to_json() + "\n" for s in segments))
    tmp.replace(path)
    return path


def iter_jsonl(path: Path) -> Iterator[Segment]:
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                yield Segment.from_json(line)
