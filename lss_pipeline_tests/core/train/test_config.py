"""The profiles' training choices reach TrainConfig; the demo and full profiles name real partitions."""

import pytest

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES
from lss_pipeline.core.settings import PROFILES
from lss_pipeline.core.train.augment import FLIP_AXIS_BY_CATEGORY
from lss_pipeline.core.train.config import TrainConfig


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_flip_merge_comes_from_the_profile_for_the_sided_categories_only(profile):
    prof = PROFILES[profile]
    assert set(prof.flip_merge) <= set(FLIP_AXIS_BY_CATEGORY)
    for category in CATEGORIES:
        config = TrainConfig.from_profile(profile, "convnext", category)
        config.validate()
        assert config.flip_merge == (category in prof.flip_merge)
        assert (config.in_chans, config.crop_px, config.epochs) == (prof.slices, prof.crop_px, prof.epochs)
        assert config.num_workers == prof.num_workers
    overridden = TrainConfig.from_profile(profile, "convnext", "sbs", flip_merge=False)
    assert overridden.flip_merge is False


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_loss_comparison_names_partitions_of_the_grid(profile):
    prof = PROFILES[profile]
    grid = {f"{a}|{c}" for a in ARCHITECTURES for c in CATEGORIES}
    assert prof.loss_comparison and set(prof.loss_comparison) <= grid
    assert prof.n_folds >= 2 and prof.train_folds is None  # every fold trained: OOF covers the cv split


def test_full_profile_compares_both_losses_everywhere_and_starts_from_timm_weights():
    full = PROFILES["full"]
    assert len(full.loss_comparison) == len(ARCHITECTURES) * len(CATEGORIES)
    assert full.pretrained == "timm" and full.n_folds == 5


def test_gradient_clipping_is_on_by_default_and_a_negative_norm_is_refused():
    assert TrainConfig().clip_grad_norm > 0
    TrainConfig(clip_grad_norm=0.0).validate()
    with pytest.raises(ValueError, match="clip_grad_norm"):
        TrainConfig(clip_grad_norm=-1.0).validate()
