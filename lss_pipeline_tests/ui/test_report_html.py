"""The evaluation report's self-contained HTML opens in headless Chromium with its plots."""

import pytest

from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.core.evaluate.test_report import (
    CONVNEXT_WRONG,
    DATASET,
    MACS,
    RESNET_WRONG,
    report_of,
    write_partition,
)

pytestmark = pytest.mark.ui


def test_report_html_renders_tables_and_embedded_plots(tmp_path, page, artifacts_dir):
    paths = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    for cat, wrong in CONVNEXT_WRONG.items():
        write_partition(paths, "convnext", cat, wrong, MACS["convnext"])
    for cat, wrong in RESNET_WRONG.items():
        write_partition(paths, "resnet", cat, wrong, MACS["resnet"])
    result = report_of(paths, dataset=DATASET)

    page.goto(result.html_path.as_uri())
    assert "synthetic" in page.inner_text("body")
    assert page.locator("table").count() >= 3
    images = page.locator("img")
    assert images.count() >= 3
    # Every embedded plot decoded: a broken data URI would leave naturalWidth at 0.
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(width > 100 for width in widths), widths
    assert "76.17" in page.inner_text("body")  # the thesis' ConvNeXt SCS recall, side by side
    page.screenshot(path=str(artifacts_dir / "evaluation_report.png"), full_page=True)
