"""Copy the training part of a data folder into a compact pack (for a GPU machine that
cannot see the original): videos as they are, photos re-encoded as JPEG quality 95.

    python scripts/make_data_pack.py ../shared/data .carry/data
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image

TRAIN_VIDEOS = ["video/sam2/01_dog.mp4", "video/sam2/02_cups.mp4", "video/sam2/04_coffee.mp4", "video/sam2/bedroom.mp4"]
TRAIN_PHOTO_FOLDERS = ["images/Kodak24", "images/McMaster", "images/scikit-image"]
JPEG_QUALITY = 95


def main(src: Path, dst: Path) -> None:
    for rel in TRAIN_VIDEOS:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst / rel)
    for folder in TRAIN_PHOTO_FOLDERS:
        for path in sorted((src / folder).iterdir()):
            out = (dst / folder / path.name).with_suffix(".jpg")
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as im:
                im.convert("RGB").save(out, quality=JPEG_QUALITY)
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"{dst}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
