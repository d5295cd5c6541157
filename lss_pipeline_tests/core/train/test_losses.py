import pytest
import torch
import torch.nn.functional as F

from lss_pipeline.core.train.losses import WeightedFocalLoss, build_loss


def _batch(seed: int = 0, n: int = 64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g) * 2, torch.randint(0, 3, (n,), generator=g)


def test_focal_with_gamma_zero_equals_weighted_cross_entropy():
    logits, target = _batch()
    weights = [1.0, 2.5, 7.0]
    focal = build_loss("focal", weights, gamma=0.0)(logits, target)
    ce = build_loss("weighted_ce", weights)(logits, target)
    reference = F.cross_entropy(logits, target, weight=torch.tensor(weights))
    torch.testing.assert_close(focal, reference)
    torch.testing.assert_close(ce, reference)


def test_focal_down_weights_easy_examples():
    # One confident right prediction, one confident wrong one.
    logits = torch.tensor([[6.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    target = torch.tensor([0, 2])
    per_sample_ce = F.cross_entropy(logits, target, reduction="none")
    focal = WeightedFocalLoss(None, gamma=2.0)
    easy = focal(logits[:1], target[:1])
    hard = focal(logits[1:], target[1:])
    assert easy < per_sample_ce[0] * 0.01  # (1 - p)^2 with p ~ 0.995
    assert hard > per_sample_ce[1] * 0.95  # (1 - p)^2 ~ 1 for a wrong prediction


@pytest.mark.parametrize("name", ["weighted_ce", "focal"])
def test_weights_shift_gradient_toward_rare_classes(name):
    # The same uninformative logits for a common (0) and a rare (2) sample.
    target = torch.tensor([0, 2])

    def grad_norms(weights):
        logits = torch.zeros(2, 3, requires_grad=True)
        build_loss(name, weights, gamma=2.0)(logits, target).backward()
        return logits.grad.norm(dim=1)

    uniform = grad_norms(None)
    weighted = grad_norms([1.0, 2.0, 8.0])
    torch.testing.assert_close(uniform[0], uniform[1])
    assert weighted[1] / weighted[0] == pytest.approx(8.0)
    assert weighted[1] > uniform[1]


def test_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("dice", None)
    with pytest.raises(ValueError, match="expected 3 class weights"):
        build_loss("weighted_ce", [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        build_loss("focal", [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="gamma"):
        build_loss("focal", None, gamma=-1.0)


def test_loss_is_float32_under_bf16_logits():
    logits, target = _batch(1)
    loss = build_loss("focal", [1.0, 2.0, 4.0])(logits.to(torch.bfloat16), target)
    assert loss.dtype == torch.float32
