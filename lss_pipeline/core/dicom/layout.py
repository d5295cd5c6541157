"""The RSNA image folder layout: ``{train|test}_images/{study_id}/{series_id}/{instance_number}.dcm``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lss_pipeline.core.constants import TEST_IMAGES, TRAIN_IMAGES
from lss_pipeline.core.dicom.schema import QuarantineError
from lss_pipeline.core.paths import Paths

# Image folder name -> value of the ``split`` column.
SPLIT_OF_FOLDER: dict[str, str] = {TRAIN_IMAGES: "train", TEST_IMAGES: "test"}

_DIGITS = re.compile(r"[0-9]+")


def parse_image_path(rel_path: str) -> tuple[str, int, int, int]:
    """``train_images/1/2/3.dcm`` -> (``train``, 1, 2, 3); raises QuarantineError("bad_path")."""
    parts = rel_path.split("/")
    if len(parts) != 4 or parts[0] not in SPLIT_OF_FOLDER:
        raise QuarantineError(
            "bad_path",
            f"expected {{{'|'.join(SPLIT_OF_FOLDER)}}}/{{study_id}}/{{series_id}}/{{instance_number}}.dcm, "
            f"got {rel_path!r}",
        )
    folder, study, series, name = parts
    stem, dot, ext = name.rpartition(".")
    if not dot or ext.lower() != "dcm":
        raise QuarantineError("bad_path", f"file name {name!r} does not end in .dcm")
    for what, value in (("study_id", study), ("series_id", series), ("instance_number", stem)):
        if not _DIGITS.fullmatch(value):
            raise QuarantineError("bad_path", f"{what} {value!r} in the path is not a non-negative integer")
    return SPLIT_OF_FOLDER[folder], int(study), int(series), int(stem)


def image_folders(paths: Paths) -> tuple[Path, ...]:
    return (paths.train_images, paths.test_images)


def list_image_files(paths: Paths) -> list[str]:
    """Non-hidden files under the image folders, as sorted POSIX paths relative to the raw folder.

    Linked folders are followed (a study or series kept on another disk is still read); a
    folder reached twice (a link loop) is walked once.
    """
    found: list[str] = []
    for top in image_folders(paths):
        if not top.is_dir():
            continue
        walked: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            walked.add(os.path.realpath(dirpath))
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) not in walked
            ]
            rel_dir = Path(dirpath).relative_to(paths.raw_dir).as_posix()
            found.extend(f"{rel_dir}/{f}" for f in filenames if not f.startswith("."))
    found.sort()
    return found


def require_raw_dataset(paths: Paths) -> None:
    """FileNotFoundError with what to do when the raw folder holds neither labels nor images."""
    if not paths.train_csv.exists() and not any(folder.exists() for folder in image_folders(paths)):
        raise FileNotFoundError(
            f"No RSNA dataset at {paths.raw_dir}: put the Kaggle download there, set LSS_RAW_DIR, "
            "or run `lss-pipeline synth --out <dir>` for a synthetic one."
        )
