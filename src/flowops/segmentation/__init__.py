"""The segmentation template: flowops' own trainer, and its plug-ins to the engine.

The engine (every other `flowops` module) never imports this package; it finds the template's
plug-ins through entry points (pyproject.toml, docs/architecture.md): its schema (`schema`),
metrics (`metrics`), evidence (`evidence`), the report's prediction grid (`report`), the image
adapter of `flowops serve` (`serving`) and its commands (`cli`). The rest is the template's own:
the experiment spec and its MLproject parameters (`experiment`, `params`), its catalog of
architectures and COCO categories (`catalog`), the decode and resize shared by the cache and the
served model (`preprocess`), its evaluation (`evaluation`), figures (`plots`), data (`data`),
trainer (`training`), TensorFlow's environment (`tfenv`) and the logged model (`pyfunc`;
`flowops.pyfunc` and `flowops.train` keep the old paths for models and MLprojects logged before).
"""
