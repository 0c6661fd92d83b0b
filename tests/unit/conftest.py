"""Unit tier: fast, no services, no TensorFlow unless the code under test needs it."""
