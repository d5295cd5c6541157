"""Grade a study from its DICOMs alone: localise -> crop (the ``level_crops`` code) -> grade.

``study`` (a study folder's headers and series types), ``grade`` (registered graders on crops of
the localised points), ``run`` (one study end to end, with timings), ``submission`` (the Kaggle
CSV and its rules), ``overlay`` (a PNG per series), ``folder`` (``lss-pipeline predict``).
"""
