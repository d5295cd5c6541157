import numpy as np
import pytest

from lss_pipeline.core.train.augment import CropAugmenter, flip_batch_to_left, flip_to_left


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    return rng.random((6, 5, 32, 32), dtype=np.float32)


def test_train_augmentation_keeps_range_shape_dtype_and_changes_crops(crops):
    out = CropAugmenter(train=True).batch(crops, seed=3)
    assert out.shape == crops.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    changed = [not np.allclose(a, b) for a, b in zip(out, crops)]
    assert sum(changed) >= 4  # p < 1 per transform, but most crops get something


def test_eval_mode_is_identity(crops):
    out = CropAugmenter(train=False).batch(crops.astype(np.float16), seed=3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, crops.astype(np.float16).astype(np.float32))


def test_augmentation_is_reproducible_from_seed(crops):
    augmenter = CropAugmenter(train=True)
    first = augmenter.batch(crops, seed=11)
    np.testing.assert_array_equal(first, augmenter.batch(crops, seed=11))
    assert not np.array_equal(first, augmenter.batch(crops, seed=12))


def test_geometry_is_shared_by_all_slices():
    # Identical slices must stay identical: the affine acts on the whole stack.
    # Noise is per-pixel and may differ, so compare after removing it with a tolerance.
    rng = np.random.default_rng(1)
    slice_ = np.zeros((32, 32), np.float32)
    slice_[8:24, 12:20] = 0.8
    crops = np.repeat(slice_[None, None], 3, axis=1).repeat(8, axis=0)
    out = CropAugmenter(train=True).batch(crops, seed=int(rng.integers(1 << 30)))
    spread = np.abs(out - out.mean(axis=1, keepdims=True)).mean()
    assert spread < 0.05


def test_single_slice_crops_keep_shape():
    crop = np.full((1, 1, 16, 16), 0.5, np.float32)
    assert CropAugmenter(train=True).batch(crop, seed=0).shape == (1, 1, 16, 16)


def test_flip_nfs_reverses_slice_order_only():
    crop = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    flipped = flip_to_left(crop, "nfs")
    np.testing.assert_array_equal(flipped, crop[::-1])
    np.testing.assert_array_equal(flipped[1], crop[1])  # the centre slice itself is not mirrored


def test_flip_sbs_mirrors_image_columns_only():
    crop = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    np.testing.assert_array_equal(flip_to_left(crop, "sbs"), crop[:, :, ::-1])


def test_flip_batch_flips_only_right_rows_and_rejects_unsided_category():
    crops = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    out = flip_batch_to_left(crops, np.array([False, True]), "nfs")
    np.testing.assert_array_equal(out[0], crops[0])
    np.testing.assert_array_equal(out[1], crops[1, ::-1])
    with pytest.raises(ValueError, match="sided"):
        flip_to_left(crops[0], "scs")
