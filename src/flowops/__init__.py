"""flowops: GitOps for machine-learning models."""
