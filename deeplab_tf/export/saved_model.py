"""SavedModel export of a trained DeepLabv3 for serving (inference as in paper 4.1, 4.3).

Two signatures, output stride / scales / flip / padded size fixed at export time:
  serving_default  images: string [N] (JPEG or PNG bytes, any sizes)
                   -> labels int32 [N, max H, max W] (255 outside each image), heights,
                      widths, status int32 [N] (see `serving.py`), probabilities (optional)
  serve_images     images: uint8 [B, H, W, 3] (one size per call)
                   -> labels int32 [B, H, W], probabilities float32 [B, H, W, C] (optional)
The served graph is built for inference: every batch norm folded into the convolution before
it (`fold_batch_norm.inference_model`, a copy; the trained model is not changed), so that
TensorFlow's CPU runtime (Grappler's remapper) fuses each convolution with its bias and
ReLU; `fold_batch_norm=False` serves the graph as trained. The SavedModel holds only
TensorFlow ops and the weights: it loads with
`tf.saved_model.load` in a process that has neither Keras nor deeplab_tf. What each label
means travels with it: the class table (names, colours, ignore value) is the asset
EXPORT_DIR/assets/classes.json and the `classes` of EXPORT_DIR/deeplab_export.json.

What a request may cost is bounded at export (`serving.Bounds`, recorded in the metadata as
`bounds`; docs/serving.md). Publishing: everything is written into a new sibling directory,
which then takes EXPORT_DIR's place by renames: a server never sees the variables of one
export under the saved_model.pb of another. A previous export in EXPORT_DIR is swapped
out (and removed); a directory holding anything else is refused, naming it.

Warm-up: a fresh server spends its first request building and optimising the graph
(seconds). TF Serving runs the PredictionLog records of
EXPORT_DIR/assets.extra/tf_serving_warmup_requests while it loads the model, before it
reports the model available; the export writes one request per signature with one image of
`warmup_size` x `warmup_size` pixels. `warm_up(loaded, export_dir)` does the same for a
Python process that serves with `tf.saved_model.load`.
"""
import fnmatch
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from deeplab_tf import atomic
from deeplab_tf import classes
from deeplab_tf.evaluation import inference
from deeplab_tf.export import serving
from deeplab_tf.modeling import fold_batch_norm as fold_lib

METADATA_FILE = "deeplab_export.json"
SIGNATURE_BYTES = "serving_default"
SIGNATURE_IMAGES = "serve_images"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")  # TF Serving's name


# What a SavedModel export directory may hold (tf.saved_model.save's files and ours): only
# such a directory is swapped out by a new export.
EXPORT_ENTRIES = frozenset({"saved_model.pb", "variables", "assets", "assets.extra",
                            "fingerprint.pb", METADATA_FILE})
# The files `tools.export --format=tflite|onnx` writes into the same default directory
# (deploy.file_name, their evaluation JSON, the class table beside them): a new SavedModel
# export keeps them (hard links into the new directory), instead of refusing the directory.
DEPLOYED_FILES = ("model*.tflite", "model*.onnx", "model*.eval_*.json", classes.CLASSES_FILE)


def _deployed(name):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in DEPLOYED_FILES)


def export_saved_model(model, export_dir, scales=(1.0,), flip=False, probabilities=False,
                       max_pixels=None, class_table=None, crop_size=None, warmup_size=513,
                       bounds=None, fold_batch_norm=True):
    """Writes `model` (a DeepLabV3 at the serving output stride) as a SavedModel.

    `fold_batch_norm`: serve a copy with every batch norm folded into its convolution
    (`fold_batch_norm.inference_model`; `model` itself is not changed), or (False) the
    graph as trained. Recorded in the metadata, with how many batch norms were folded.

    `class_table`: the model's `classes.ClassTable`, written as the asset
    EXPORT_DIR/assets/classes.json and into the metadata (what label 3 means).
    `crop_size`: the (height, width) every image is padded to (the evaluation crop), or
    None for the smallest output_stride*k+1; recorded in the metadata.
    `bounds`: a `serving.Bounds` (default `serving.DEFAULT_BOUNDS`; `max_pixels`, if given,
    replaces its max_pixels).
    Also writes the warm-up requests (images of warmup_size x warmup_size; None: none).
    Refuses (ValueError) an EXPORT_DIR holding anything but a previous export, before any
    work. Returns the metadata dict also written to EXPORT_DIR/deeplab_export.json.
    """
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales}")
    output_stride = inference.model_output_stride(model)
    bounds = serving.Bounds(*(int(v) for v in (bounds or serving.DEFAULT_BOUNDS)))
    if max_pixels is not None:
        bounds = bounds._replace(max_pixels=int(max_pixels))
    if min(bounds) <= 0:
        raise ValueError(f"the serving bounds must be positive, got {bounds.to_dict()}")
    check_target(export_dir)
    num_batch_norm = sum(isinstance(layer, keras.layers.BatchNormalization)
                         for layer in model.layers)
    if fold_batch_norm:
        model = fold_lib.inference_model(model)
    folded = dict(fold_batch_norm=bool(fold_batch_norm),
                  folded_batch_norms=fold_lib.folded_count(model), batch_norms=num_batch_norm)
    settings = dict(scales=list(scales), flip=bool(flip), output_stride=output_stride,
                    probabilities=bool(probabilities), bounds=bounds,
                    crop_size=None if crop_size is None else [int(s) for s in crop_size])

    def serve_bytes(images):
        """JPEG/PNG bytes -> labels, heights, widths, status (see serving.py).

        Decodes the pixels as stored, without EXIF rotation (as TensorFlow's decoders do).
        """
        return serving.predict_encoded(model, images, **settings)

    def serve_images(images):
        return serving.predict_images(model, images, **settings)

    # A plain tf.Module with the model's variables and the two signatures. Keras'
    # ExportArchive, used before, stored every variable twice (the tracked model's and
    # its own copies: a ResNet-50 export was 301 MB instead of 152 MB) and walked the
    # model's object graph for lookup tables, which a DeepLabv3 has none of (14 of the
    # export's 33 s). AutoGraph turns the per-image loop over the decoded images (plain
    # Python control flow) into a while loop; the images signature needs none.
    root = tf.Module()
    root.model_variables = [variable.value for variable in model.variables]
    root.serve_bytes = tf.function(serve_bytes, input_signature=[
        tf.TensorSpec([None], tf.string, name="images")])
    root.serve_images = tf.function(serve_images, autograph=False, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    export_dir = os.path.abspath(export_dir)
    parent, name = os.path.split(export_dir)
    os.makedirs(parent, exist_ok=True)
    new_dir = tempfile.mkdtemp(prefix=f".{name}.new-", dir=parent)
    os.chmod(new_dir, 0o777 & ~_umask())  # mkdtemp's 0700 would hide it from a server
    try:
        _write(root, new_dir, model, class_table)
        metadata = dict(_metadata(settings, model, class_table, warmup_size), **folded)
        if warmup_size is not None:
            write_warmup_requests(new_dir, int(warmup_size))
        atomic.write_text(os.path.join(new_dir, METADATA_FILE), json.dumps(metadata, indent=2))
        publish(new_dir, export_dir)
    finally:
        shutil.rmtree(new_dir, ignore_errors=True)  # gone already unless something failed
    return metadata


def _write(root, export_dir, model, class_table):
    with tempfile.TemporaryDirectory() as staging:
        if class_table is not None:
            if class_table.num_classes != model.num_classes:
                raise ValueError(f"{class_table.num_classes} classes in the class table, "
                                 f"{model.num_classes} in the model")
            # An asset travels with the SavedModel (tf.saved_model.save copies it to
            # EXPORT_DIR/assets/); `loaded.classes_file.asset_path` finds it after a load.
            root.classes_file = tf.saved_model.Asset(classes.write(class_table, staging))
        tf.saved_model.save(root, export_dir, signatures={
            SIGNATURE_BYTES: root.serve_bytes.get_concrete_function(),
            SIGNATURE_IMAGES: root.serve_images.get_concrete_function()})


def _metadata(settings, model, class_table, warmup_size):
    settings = dict(settings)
    bounds = settings.pop("bounds")
    return dict(settings, max_pixels=bounds.max_pixels, bounds=bounds.to_dict(),
                num_classes=model.num_classes,
                class_names=list(class_table.names) if class_table else [],
                classes=class_table.to_dict() if class_table else None,
                signatures={SIGNATURE_BYTES: "string [N] JPEG/PNG bytes (decoded as "
                                             "stored, without EXIF rotation)",
                            SIGNATURE_IMAGES: "uint8 [B,H,W,3]"},
                status_codes={name: code for code, name in serving.STATUS_NAMES.items()},
                pad_label=serving.PAD_LABEL,
                warmup_size=None if warmup_size is None else int(warmup_size))


def check_target(export_dir):
    """Raises ValueError if `export_dir` holds anything but a previous export."""
    if not os.path.isdir(export_dir):
        if os.path.lexists(export_dir):
            raise ValueError(f"--export_dir={export_dir} is a file, not a directory")
        return
    foreign = sorted(name for name in set(os.listdir(export_dir)) - EXPORT_ENTRIES
                     if not _deployed(name))
    if foreign:
        raise ValueError(f"--export_dir={export_dir} holds other files than a SavedModel "
                         f"export ({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}"
                         f"): name a new or empty directory (TF Serving: a new version "
                         f"number, EXPORT_BASE/N+1)")


def publish(new_dir, export_dir):
    """Puts the complete export `new_dir` in `export_dir`'s place by renames.

    A previous export there is first renamed aside, then removed: a reader sees the old
    export or the new one (or, between the two renames, none), never a mixture.
    """
    check_target(export_dir)  # again: something may have arrived while exporting
    old = None
    if os.path.isdir(export_dir):
        for name in os.listdir(export_dir):
            if _deployed(name) and not os.path.lexists(os.path.join(new_dir, name)):
                os.link(os.path.join(export_dir, name), os.path.join(new_dir, name))
    if os.path.isdir(export_dir) and os.listdir(export_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.old-",
                               dir=os.path.dirname(export_dir))
        os.rename(export_dir, os.path.join(old, "export"))
    elif os.path.isdir(export_dir):
        os.rmdir(export_dir)  # rename() does not replace a directory, even an empty one
    os.rename(new_dir, export_dir)
    if old:
        shutil.rmtree(old)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def warmup_image(size):
    """A size x size uint8 RGB image with some structure (a gradient), not a constant."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    return np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :],
                                        np.float32(128)), -1).astype(np.uint8)


def warmup_requests(size):
    """One PredictionLog per signature, each with one size x size image."""
    image = warmup_image(size)
    inputs = {SIGNATURE_BYTES: tf.make_tensor_proto(
                  [tf.io.encode_jpeg(image, quality=90).numpy()], dtype=tf.string),
              SIGNATURE_IMAGES: tf.make_tensor_proto(image[None], dtype=tf.uint8)}
    logs = []
    for signature, tensor in inputs.items():
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(signature_name=signature))
        request.inputs["images"].CopyFrom(tensor)
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(export_dir, size):
    """Writes EXPORT_DIR/assets.extra/tf_serving_warmup_requests (a TFRecord file)."""
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(temporary):
        with tf.io.TFRecordWriter(temporary) as writer:
            for log in warmup_requests(size):
                writer.write(log.SerializeToString())

    atomic.write_with(path, write)
    return path


def read_warmup_requests(export_dir):
    """[(signature name, {input name: numpy array})] of the export's warm-up records."""
    requests = []
    for record in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        requests.append((request.model_spec.signature_name,
                         {name: tf.make_ndarray(proto) for name, proto in
                          request.inputs.items()}))
    return requests


def warm_up(loaded, export_dir):
    """Runs the warm-up requests through a `tf.saved_model.load`ed export's signatures.

    Returns the number of requests run.
    """
    requests = read_warmup_requests(export_dir)
    for signature, inputs in requests:
        loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return len(requests)
