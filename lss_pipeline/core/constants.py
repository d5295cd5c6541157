"""Facts of the RSNA 2024 Lumbar Spine Degenerative Classification dataset.

Every string here is the contract with the Kaggle files; keep them exact.
"""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
LEVEL_SLUGS: tuple[str, ...] = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")

SEVERITIES: tuple[str, ...] = ("Normal/Mild", "Moderate", "Severe")
SEVERITY_TO_LABEL: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
# Competition sample weights for a true Normal/Mild, Moderate, Severe row.
SEVERITY_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0)
CLASS_NAMES: tuple[str, ...] = ("normal_mild", "moderate", "severe")
# Probability columns of every prediction table (OOF, test predictions), in CLASS_NAMES order.
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{name}" for name in CLASS_NAMES)

SERIES_DESCRIPTIONS: tuple[str, ...] = ("Sagittal T1", "Sagittal T2/STIR", "Axial T2")

# Category key -> facts. `conditions` are the Kaggle condition strings of
# train_label_coordinates.csv, `slugs` the matching train.csv column stems.
CATEGORIES: tuple[str, ...] = ("scs", "nfs", "sbs")
CATEGORY_NAMES: dict[str, str] = {
    "scs": "spinal canal stenosis",
    "nfs": "neural foraminal narrowing",
    "sbs": "subarticular stenosis",
}
# Series each category is graded on (docs/dataset.md "What is graded").
CATEGORY_SERIES: dict[str, str] = {
    "scs": "Sagittal T2/STIR",
    "nfs": "Sagittal T1",
    "sbs": "Axial T2",
}
# (condition string, side or None, column stem) in train.csv column order.
CONDITIONS: tuple[tuple[str, str, str | None, str], ...] = (
    # (kaggle condition, category, side, train.csv stem)
    ("Spinal Canal Stenosis", "scs", None, "spinal_canal_stenosis"),
    ("Left Neural Foraminal Narrowing", "nfs", "left", "left_neural_foraminal_narrowing"),
    ("Right Neural Foraminal Narrowing", "nfs", "right", "right_neural_foraminal_narrowing"),
    ("Left Subarticular Stenosis", "sbs", "left", "left_subarticular_stenosis"),
    ("Right Subarticular Stenosis", "sbs", "right", "right_subarticular_stenosis"),
)
CONDITION_NAMES: tuple[str, ...] = tuple(c[0] for c in CONDITIONS)
CONDITION_CATEGORY: dict[str, str] = {c[0]: c[1] for c in CONDITIONS}
CONDITION_SIDE: dict[str, str | None] = {c[0]: c[2] for c in CONDITIONS}
CONDITION_STEM: dict[str, str] = {c[0]: c[3] for c in CONDITIONS}

# train.csv: study_id + 25 label columns, in this exact order.
TRAIN_LABEL_COLUMNS: tuple[str, ...] = tuple(
    f"{stem}_{lvl}" for (_, _, _, stem) in CONDITIONS for lvl in LEVEL_SLUGS
)
TRAIN_CSV_HEADER: tuple[str, ...] = ("study_id", *TRAIN_LABEL_COLUMNS)
COORDINATES_CSV_HEADER: tuple[str, ...] = (
    "study_id",
    "series_id",
    "instance_number",
    "condition",
    "level",
    "x",
    "y",
)
SERIES_CSV_HEADER: tuple[str, ...] = ("study_id", "series_id", "series_description")
SUBMISSION_CSV_HEADER: tuple[str, ...] = ("row_id", "normal_mild", "moderate", "severe")

TRAIN_CSV = "train.csv"
COORDINATES_CSV = "train_label_coordinates.csv"
SERIES_CSV = "train_series_descriptions.csv"
TEST_SERIES_CSV = "test_series_descriptions.csv"
SUBMISSION_CSV = "sample_submission.csv"
TRAIN_IMAGES = "train_images"
TEST_IMAGES = "test_images"
LABEL_FILES: tuple[str, ...] = (TRAIN_CSV, COORDINATES_CSV, SERIES_CSV)

# Real class shares (docs/dataset.md), Normal/Mild, Moderate, Severe.
REAL_CLASS_SHARES: dict[str, tuple[float, float, float]] = {
    "scs": (0.878, 0.075, 0.048),
    "nfs": (0.780, 0.181, 0.040),
    "sbs": (0.714, 0.190, 0.096),
}

ARCHITECTURES: tuple[str, ...] = ("convnext", "resnet", "swin")
