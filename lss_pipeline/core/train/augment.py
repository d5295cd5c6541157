"""Training augmentation for 2.5D crops, and the left/right flip merge for sided categories.

Crops are float32 in [0, 1] shaped (slices, H, W); albumentations wants (H, W, C), so the
slices become channels and every slice of a crop gets the same geometric transform.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

# How a right-side crop is mirrored to look like a left-side one (mirror across the
# mid-sagittal plane):
# - nfs, sagittal T1: the sagittal plane is parallel to the mirror plane, so the image
#   itself is unchanged; patient left-right is the slice axis -> reverse the slice order.
#   A horizontal image flip here would swap anterior and posterior: wrong.
# - sbs, axial T2: patient left-right is the image's row direction (columns) -> flip W.
# - scs has no side; nothing to merge.
FLIP_AXIS_BY_CATEGORY: dict[str, int] = {"nfs": 0, "sbs": 2}  # axis of a (slices, H, W) crop


def build_train_transform() -> A.Compose:
    """Mild, grayscale-sane transforms; all act identically on every slice of a crop."""
    return A.Compose(
        [
            A.Affine(
                scale=(0.9, 1.1),
                translate_percent=(-0.06, 0.06),
                rotate=(-10, 10),
                shear=(-5, 5),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.7,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.15, p=0.5),
            A.GaussNoise(std_range=(0.01, 0.04), mean_range=(0.0, 0.0), p=0.3),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.05, 0.15),
                hole_width_range=(0.05, 0.15),
                fill=0.0,
                p=0.3,
            ),
        ]
    )


class CropAugmenter:
    """``train=True``: random transforms, reproducible from ``seed``; ``train=False``: identity."""

    def __init__(self, train: bool):
        self.train = train
        self._transform = build_train_transform() if train else None

    def __call__(self, crop: np.ndarray, seed: int | None = None) -> np.ndarray:
        return self.batch(crop[None], seed)[0]

    def batch(self, crops: np.ndarray, seed: int | None = None) -> np.ndarray:
        """(B, slices, H, W) float in [0, 1] -> same shape, float32, in [0, 1]."""
        if crops.ndim != 4:
            raise ValueError(f"expected crops shaped (batch, slices, H, W), got {crops.shape}")
        crops = np.asarray(crops, dtype=np.float32)
        if self._transform is None:
            return crops
        if seed is not None:
            self._transform.set_random_seed(seed)
        out = np.empty_like(crops)
        for i, crop in enumerate(crops):
            hwc = np.ascontiguousarray(crop.transpose(1, 2, 0))
            augmented = self._transform(image=hwc)["image"]
            if augmented.ndim == 2:  # single-slice crops may lose their channel axis
                augmented = augmented[:, :, None]
            out[i] = augmented.transpose(2, 0, 1)
        # Noise and contrast can leave [0, 1]; crops are defined on it.
        np.clip(out, 0.0, 1.0, out=out)
        return out


def flip_to_left(crop: np.ndarray, category: str) -> np.ndarray:
    """Mirror a right-side (slices, H, W) crop of ``category`` so it looks like a left one."""
    if category not in FLIP_AXIS_BY_CATEGORY:
        raise ValueError(
            f"flip merge is defined for sided categories {sorted(FLIP_AXIS_BY_CATEGORY)}, not {category!r}"
        )
    return np.flip(crop, axis=FLIP_AXIS_BY_CATEGORY[category])


def flip_batch_to_left(crops: np.ndarray, is_right: np.ndarray, category: str) -> np.ndarray:
    """Flip the rows of a (B, slices, H, W) batch where ``is_right``; others unchanged."""
    if category not in FLIP_AXIS_BY_CATEGORY:
        raise ValueError(
            f"flip merge is defined for sided categories {sorted(FLIP_AXIS_BY_CATEGORY)}, not {category!r}"
        )
    if not is_right.any():
        return crops
    out = np.array(crops, copy=True)
    out[is_right] = np.flip(out[is_right], axis=FLIP_AXIS_BY_CATEGORY[category] + 1)
    return out
