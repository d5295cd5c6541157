"""2.5D crops: patient-space geometry (``geometry``), stacks and slice order (``stacks``), cutting
one crop (``crop``), cropping any list of points (``points.crop_points``, used for labelled and
predicted points alike), the ``level_crops`` outputs (``writer``, ``samples``), the checks'
facts (``quality``) and the process pool (``pool``)."""
