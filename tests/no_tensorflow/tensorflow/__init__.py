"""Stands in for TensorFlow on the JAX test's path, as on the GPU machine (no TensorFlow)."""
raise ImportError("TensorFlow is deliberately unavailable in this process")
