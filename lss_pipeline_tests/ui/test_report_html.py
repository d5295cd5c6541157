"""The evaluation report's self-contained HTML opens in headless Chromium with its plots."""

import pytest

from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.core.evaluate.fabricate import DATASET
from lss_pipeline_tests.core.evaluate.test_report import report_of, write_grid

pytestmark = pytest.mark.ui


def test_report_html_renders_tables_and_embedded_plots(tmp_path, page, artifacts_dir):
    paths = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    write_grid(paths)
    result = report_of(paths, dataset=DATASET)

    page.goto(result.html_path.as_uri())
    body = page.inner_text("body")
    assert "synthetic" in body and "held-out test split" in body
    assert page.locator("table").count() >= 5
    images = page.locator("img")
    assert images.count() >= 3
    # Every embedded plot decoded: a broken data URI would leave naturalWidth at 0.
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(width > 100 for width in widths), widths
    assert "76.17" in body  # the thesis' ConvNeXt SCS recall, side by side
    assert "reproduced" in body
    page.screenshot(path=str(artifacts_dir / "evaluation_report.png"), full_page=True)
