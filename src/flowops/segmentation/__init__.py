"""The segmentation template: flowops' own trainer, and its plug-ins to the engine.

The engine (every other `flowops` module) never imports this package; it finds the template's
plug-ins through entry points (pyproject.toml): the report's prediction grid (`report`). The rest
is the template's own: its catalog of architectures and COCO categories (`catalog`), the decode
and resize shared by the cache and the served model (`preprocess`), its evaluation (`evaluation`),
its data (`data`), its trainer (`training`), TensorFlow's environment (`tfenv`) and the logged
model (`pyfunc`; `flowops.pyfunc` and `flowops.train` keep the old paths for models and MLprojects
logged before).
"""
