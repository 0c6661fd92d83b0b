"""The PR comment: the candidate against the models holding the aliases (`comment`: report.md and
report.json), what it compares (`comparison`) and its figures (`figures`).

May import: `spec`, `gitops`, `registry`, `promotion`, the shared modules and MLflow (inside functions).
"""
