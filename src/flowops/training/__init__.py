"""Running any project's training: `mlflow run` for `flowops train` (`launch`), the run's lease,
the end of its stderr, the holders scored by a project's evaluate entry point, the environment
`flowops train` hands a trainer, multi-worker manifests for a cluster.

May import: `spec`, `gitops`, the shared modules and MLflow (inside functions). Never TensorFlow
or a template (a template's trainer reads what this room sets).
"""
