"""Training the segmentation model: TF set-up, model, augmentation, metrics, the MLflow Project runner.

May import: everything below it (`spec`, `gitops`, `data`, the shared modules), TensorFlow inside functions.
"""
