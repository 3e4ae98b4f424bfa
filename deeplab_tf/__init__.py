"""deeplab_tf: DeepLabv3 (Chen et al., 2017) in TensorFlow / Keras 3."""
__version__ = "0.1.0"
