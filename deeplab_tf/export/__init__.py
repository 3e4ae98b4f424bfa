"""SavedModel (and TFLite) export of a trained DeepLabv3 for serving."""
