"""``samples.png``: a grid of sample crops (middle slice), one row per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lss_pipeline.core import constants


def render_samples_png(samples: dict[int, list[np.ndarray]], target: Path, *, title: str = "") -> None:
    """Write the grid to ``target`` (a temp path the caller renames; matplotlib Agg, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n_rows = len(constants.CLASS_NAMES)
    n_cols = max(1, max((len(v) for v in samples.values()), default=1))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols + 1.0, 1.7 * n_rows), squeeze=False)
    for cls, name in enumerate(constants.CLASS_NAMES):
        imgs = samples.get(cls, [])
        for j in range(n_cols):
            ax = axes[cls][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.set_facecolor("#eeeeee")
            if j == 0:
                ax.set_ylabel(f"{name}\n({len(imgs)} shown)" if imgs else f"{name}\n(none)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(target, format="png", dpi=80)
    plt.close(fig)
