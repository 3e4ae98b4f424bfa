"""SavedModel export of a trained DeepLabv3 for serving (inference as in paper 4.1, 4.3).

Two signatures, output stride / scales / flip / padded size fixed at export time:
  serving_default  images: string [N] (JPEG or PNG bytes, any sizes)
                   -> labels int32 [N, max H, max W] (255 outside each image), heights,
                      widths, status int32 [N] (see `serving.py`), probabilities (optional)
  serve_images     images: uint8 [B, H, W, 3] (one size per call)
                   -> labels int32 [B, H, W], probabilities float32 [B, H, W, C] (optional)
The SavedModel holds only TensorFlow ops and the weights: it loads with
`tf.saved_model.load` in a process that has neither Keras nor deeplab_tf.
"""
import json
import os

import keras
import tensorflow as tf

from deeplab_tf.evaluation import inference
from deeplab_tf.export import serving

METADATA_FILE = "deeplab_export.json"
SIGNATURE_BYTES = "serving_default"
SIGNATURE_IMAGES = "serve_images"


def export_saved_model(model, export_dir, scales=(1.0,), flip=False, probabilities=False,
                       max_pixels=serving.DEFAULT_MAX_PIXELS, class_names=None,
                       crop_size=None):
    """Writes `model` (a DeepLabV3 at the serving output stride) as a SavedModel.

    `crop_size`: the (height, width) every image is padded to (the evaluation crop), or
    None for the smallest output_stride*k+1; recorded in the metadata.
    Returns the metadata dict also written to EXPORT_DIR/deeplab_export.json.
    """
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales}")
    output_stride = inference.model_output_stride(model)
    settings = dict(scales=list(scales), flip=bool(flip), output_stride=output_stride,
                    max_pixels=int(max_pixels), probabilities=bool(probabilities),
                    crop_size=None if crop_size is None else [int(s) for s in crop_size])

    def serve_bytes(images):
        return serving.predict_encoded(model, images, **settings)

    def serve_images(images):
        return serving.predict_images(model, images, **settings)

    archive = keras.export.ExportArchive()
    archive.track(model)
    # Keras traces endpoints without AutoGraph; the per-image loop over the decoded images
    # is plain Python control flow that AutoGraph turns into a while loop.
    archive.add_endpoint(SIGNATURE_BYTES, tf.autograph.to_graph(serve_bytes),
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    archive.add_endpoint(SIGNATURE_IMAGES, serve_images, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.write_out(export_dir, verbose=False)

    metadata = dict(settings, num_classes=model.num_classes,
                    class_names=list(class_names or []),
                    signatures={SIGNATURE_BYTES: "string [N] JPEG/PNG bytes",
                                SIGNATURE_IMAGES: "uint8 [B,H,W,3]"},
                    status_codes={"ok": serving.STATUS_OK, "invalid": serving.STATUS_INVALID,
                                  "too_large": serving.STATUS_TOO_LARGE},
                    pad_label=serving.PAD_LABEL)
    with tf.io.gfile.GFile(os.path.join(export_dir, METADATA_FILE), "w") as f:
        f.write(json.dumps(metadata, indent=2))
    return metadata
