"""Level localisation: where a radiologist would put each of the 25 condition x level points.

``spec`` (what each category's localiser finds, on which series and canvas), ``canvas`` (a stack
resampled onto a fixed patient-space grid), ``series`` (a study's stacks, decoded pixels),
``data`` (training canvases and targets from the labels), ``augment``, ``model`` (the heatmap
network registered as ``lss-localizer-{category}``), ``fit`` (training), ``handoff`` (disc
levels carried between series through patient space), ``infer`` (one study's 25 points),
``metrics`` (errors against the labels), ``run`` (train + measure + MLflow for one category).
"""
