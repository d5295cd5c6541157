"""Augmentation moves the targets with the pixels, and the mirror swaps left and right."""

import torch

from lss_pipeline.core.localise.augment import AugmentConfig, augment_batch

GEOMETRY_ONLY = AugmentConfig(gamma=0.0, contrast=0.0, noise=0.0, depth_shift=0, mirror=False)


def dot_batch(n: int = 6, size: int = 48, depth: int = 3):
    images = torch.zeros(n, depth, size, size)
    targets = torch.zeros(n, 1, 3)
    for i in range(n):
        r, c = 12 + 3 * i, 30 - 2 * i
        images[i, 1, r - 1 : r + 2, c - 1 : c + 2] = 1.0
        targets[i, 0] = torch.tensor([c + 0.5, r + 0.5, 0.0])
    return images, targets, torch.ones(n, 1, dtype=torch.bool)


def test_in_plane_targets_follow_the_dot():
    images, targets, mask = dot_batch()
    g = torch.Generator().manual_seed(3)
    out, moved, kept = augment_batch(images, targets, mask, depth_step_mm=4.0, mirror_swap=None,
                                     cfg=GEOMETRY_ONLY, generator=g)  # fmt: skip
    for i in range(len(out)):
        if not kept[i, 0]:
            continue
        plane = out[i, 1]
        ys, xs = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(48) + 0.5, indexing="ij")
        mass = plane.sum()
        centre = torch.stack([(plane * xs).sum() / mass, (plane * ys).sum() / mass])
        assert float((centre - moved[i, 0, :2]).abs().max()) < 1.0


def test_mirror_swaps_sided_points_and_negates_depth():
    images = torch.zeros(8, 3, 16, 16)
    images[:, 0] = 1.0  # the first depth channel is bright
    targets = torch.tensor([[[4.0, 4.0, -4.0], [4.0, 4.0, 4.0]]]).repeat(8, 1, 1)  # left at -4 mm, right +4
    mask = torch.tensor([[True, False]]).repeat(8, 1)
    cfg = AugmentConfig(
        rotate_deg=0, scale=0, shift=0, depth_shift=0, mirror=True, gamma=0, contrast=0, noise=0
    )
    out, moved, kept = augment_batch(images, targets, mask, depth_step_mm=4.0, mirror_swap=[1, 0], cfg=cfg,
                                     generator=torch.Generator().manual_seed(0))  # fmt: skip
    flipped = out[:, 2].mean((1, 2)) > 0.5  # the bright channel moved to the other end
    assert flipped.any() and (~flipped).any()
    # Mirrored samples: the left point (kept) became the right one, at the mirrored depth.
    assert bool((kept[flipped] == torch.tensor([False, True])).all())
    assert bool((moved[flipped][:, 1, 2] == 4.0).all())
    assert bool((kept[~flipped] == torch.tensor([True, False])).all())


def test_depth_shift_moves_channels_and_depth_together():
    images = torch.zeros(16, 5, 8, 8)
    images[:, 2] = 1.0
    targets = torch.zeros(16, 1, 3)
    cfg = AugmentConfig(
        rotate_deg=0, scale=0, shift=0, depth_shift=1, mirror=False, gamma=0, contrast=0, noise=0
    )
    mask = torch.ones(16, 1, dtype=torch.bool)
    g = torch.Generator().manual_seed(1)
    out, moved, _ = augment_batch(
        images, targets, mask, depth_step_mm=4.0, mirror_swap=None, cfg=cfg, generator=g
    )
    bright = out.mean((2, 3)).argmax(1)
    assert bool((moved[:, 0, 2] == (bright - 2).float() * 4.0).all())
