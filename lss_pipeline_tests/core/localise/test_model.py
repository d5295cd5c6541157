"""The localiser network: decoding, any batch size, a loss that trains."""

import torch

from lss_pipeline.core.localise.model import STRIDE, PointLocaliser, decode, depth_bins_mm, point_loss

CANVAS = {"size": 32, "mm_per_px": 2.0, "depth": 5, "depth_step_mm": 4.0}


def test_decode_finds_the_peak_and_its_depth():
    logits = torch.full((1, 2, 16, 16), -20.0)
    logits[0, 0, 10, 4] = 20.0  # point 0 at row cell 10, column cell 4
    logits[0, 1, 3, 12] = 20.0
    bins = depth_bins_mm(CANVAS)
    depth_logits = torch.full((1, 2, len(bins), 16, 16), -20.0)
    depth_logits[0, 0, 4] = 20.0  # deepest bin everywhere for point 0
    depth_logits[0, 1, 1] = 20.0
    out = decode(logits, depth_logits, bins)
    col, row, depth, confidence = out[0, 0]
    assert (float(col), float(row)) == ((4 + 0.5) * STRIDE, (10 + 0.5) * STRIDE)
    assert float(depth) == float(bins[4]) and float(confidence) > 0.99
    assert float(out[0, 1, 2]) == float(bins[1])


def test_registered_module_takes_any_batch_size_and_eval():
    model = PointLocaliser(5, 3, widths=(4, 4, 8, 8, 8), canvas=CANVAS).eval()
    for batch in (1, 3):
        out = model(torch.rand(batch, 5, 32, 32))
        assert out.shape == (batch, 3, 4)
        assert bool(((out[..., 2] >= -8.0) & (out[..., 2] <= 8.0)).all())


def test_loss_trains_towards_the_target():
    torch.manual_seed(0)
    model = PointLocaliser(5, 1, widths=(4, 8, 8, 8, 8), canvas=CANVAS)
    x = torch.rand(2, 5, 32, 32)
    target = torch.tensor([[[10.0, 20.0, 4.0]], [[24.0, 6.0, -4.0]]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        logits, depth_logits = model.raw(x)
        loss, parts = point_loss(
            logits, depth_logits, model.bin_mm, target, mask, sigma_px=2.0, mm_per_px=2.0
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        pred = model(x)
    assert float((pred[..., :2] - target[..., :2]).abs().max()) < 4.0  # within two cells after 60 steps


def test_masked_points_do_not_count():
    model = PointLocaliser(5, 2, widths=(4, 4, 8, 8, 8), canvas=CANVAS)
    logits, depth_logits = model.raw(torch.rand(2, 5, 32, 32))
    target = torch.tensor([[[10.0, 10.0, 0.0], [1e6, 1e6, 1e6]]]).repeat(2, 1, 1)  # an absurd target, masked
    one = torch.tensor([[True, False]]).repeat(2, 1)
    loss_one, _ = point_loss(logits, depth_logits, model.bin_mm, target, one, sigma_px=2.0, mm_per_px=2.0)
    assert torch.isfinite(loss_one) and float(loss_one.detach()) < 100
    none = torch.zeros(2, 2, dtype=torch.bool)
    loss_none, parts = point_loss(
        logits, depth_logits, model.bin_mm, target, none, sigma_px=2.0, mm_per_px=2.0
    )
    assert float(loss_none.detach()) == 0.0 and parts["l1_mm"] == 0.0
