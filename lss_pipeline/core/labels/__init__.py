"""Labels: validated Kaggle tables (``tables``), the tidy long form (``tidy``), the published
outputs (``store``), the held-out test split and folds (``splits``), class weights (``class_weights``),
label ↔ DICOM consistency (``consistency``) and anatomical plausibility in patient space (``anatomy``)."""
