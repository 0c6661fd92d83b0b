"""flowops: GitOps for machine-learning models."""

# The name flowops is published under. The import package and the command are `flowops`; the
# distribution `flowops` on PyPI is an unrelated optical-flow package (#31), so every
# requirement flowops writes names this one.
DISTRIBUTION = "flowops-gitops"
