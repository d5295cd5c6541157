import pytest
import torch

from lss_pipeline.core.settings import PROFILES
from lss_pipeline.core.train.models import (
    count_macs,
    count_parameters,
    create_model,
    resolve_timm_name,
)


@pytest.mark.parametrize("arch", ["convnext", "resnet", "swin"])
def test_demo_architectures_give_three_logits_at_five_slices(arch):
    torch.manual_seed(0)
    model = create_model(arch, in_chans=5, img_size=64).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 5, 64, 64))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    assert count_parameters(model) > 100_000
    macs = count_macs(model, (1, 5, 64, 64))
    assert macs > 1_000_000


def test_demo_families_are_one_size_so_the_comparison_is_of_designs():
    demo = PROFILES["demo"]
    shape = (1, demo.slices, demo.crop_px, demo.crop_px)
    sizes = {}
    for arch in ("convnext", "resnet", "swin"):
        model = create_model(arch, in_chans=demo.slices, img_size=demo.crop_px)
        sizes[arch] = (count_parameters(model), count_macs(model, shape))
    params = [p for p, _ in sizes.values()]
    macs = [m for _, m in sizes.values()]
    assert max(params) <= 2 * min(params), sizes
    assert max(macs) <= 2 * min(macs), sizes
    assert 2_000_000 <= min(params) and max(params) <= 6_000_000, sizes


def test_profile_names_resolve():
    assert resolve_timm_name("convnext", "full") == "convnext_tiny"
    assert resolve_timm_name("resnet", "full") == "resnet50"
    assert resolve_timm_name("swin", "full") == "swin_tiny_patch4_window7_224"
    assert resolve_timm_name("resnet18") == "resnet18"
    assert set(PROFILES["demo"].models) == {"convnext", "resnet", "swin"}
    with pytest.raises(ValueError, match="unknown model name"):
        create_model("not_a_model_at_all", in_chans=5)


def test_count_macs_counts_multiply_adds_not_flops():
    # ResNet-18 at 224x224x3 is 1.82 G multiply-adds (3.6 GFLOPs if each counted twice).
    model = create_model("resnet18", in_chans=3, num_classes=1000)
    assert count_macs(model, (1, 3, 224, 224)) / 1e9 == pytest.approx(1.82, rel=0.02)


def test_model_normalises_crops_in_unit_range_before_the_backbone():
    model = create_model("resnet18", in_chans=5, num_classes=3).eval()
    crops = torch.rand(2, 5, 64, 64)
    with torch.no_grad():
        expected = model.backbone((crops - 0.5) / 0.25)
        torch.testing.assert_close(model(crops), expected)
