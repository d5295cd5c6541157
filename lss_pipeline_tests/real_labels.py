"""Where the real Kaggle label tables are: `../shared/rsna_labels` beside the repository
(as for every checkout and CI run), or $LSS_RSNA_LABELS_DIR. Tests skip when absent."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_LABELS = Path(os.environ.get("LSS_RSNA_LABELS_DIR") or REPO_ROOT.parent / "shared" / "rsna_labels")
