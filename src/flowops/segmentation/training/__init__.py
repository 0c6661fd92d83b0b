"""The segmentation trainer: TensorFlow's set-up, the model, augmentation, mixed precision,
fit/evaluate/log, the MLproject entry point (`run`; `python -m flowops.train`), several workers,
holders scored on its validation images.

May import: the engine and the template's own modules; TensorFlow inside functions.
"""
