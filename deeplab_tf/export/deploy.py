"""Deployable files of a training run: TFLite (float32, float16, int8) and ONNX, each with
its class table, and the evaluation of such a file with the checkpoint's own confusion
matrix code (paper Section 4's mIoU), so a user measures exactly what is deployed.

Every file is single scale, no flip, at the run's evaluation output stride, for a fixed
input of the evaluation crop's size (the padding to it and the upsampling are inside):
uint8 [1, H, W, 3] in, int32 labels [1, H, W] out. classes.json is written beside it.
"""
import itertools
import os

from absl import logging

from deeplab_tf import atomic, classes
from deeplab_tf.evaluation import evaluator, metrics

FORMATS = ("saved_model", "tflite", "onnx")


def file_name(fmt, quantize="none"):
    if fmt == "onnx":
        return "model.onnx"
    return "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"


def representative_images(data_config, count, output_stride):
    """The first `count` images of the training split, unaugmented, as uint8 HxWx3."""
    import deeplab_tf.data
    import numpy as np
    dataset = deeplab_tf.data.eval_input(data_config, data_config.train_split,
                                         output_stride)
    examples = evaluator.examples_from_eval_input(dataset)
    return [np.asarray(image, np.uint8) for image, _ in itertools.islice(examples, count)]


def export_file(model, config, export_dir, fmt, quantize="none", num_representative=100,
                image_size=None, crop_size=None, class_table=None):
    """Writes EXPORT_DIR/model[_QUANTIZE].tflite or model.onnx and classes.json; returns
    the file's path. `image_size`: (H, W), default `crop_size` (the evaluation crop)."""
    from deeplab_tf.evaluation import inference
    from deeplab_tf.export import tflite
    if fmt not in ("tflite", "onnx"):
        raise ValueError(f"format must be tflite or onnx, got {fmt!r}")
    if fmt == "onnx" and quantize != "none":
        raise ValueError("--quantize is for TFLite files; ONNX is exported in float32")
    if image_size is None and crop_size is None:
        raise ValueError("an exported file needs a fixed image size or evaluation crop")
    image_size = tuple(image_size or crop_size)
    os.makedirs(export_dir, exist_ok=True)
    path = os.path.join(export_dir, file_name(fmt, quantize))
    if fmt == "tflite":
        images = None
        if quantize == "int8":
            images = representative_images(config.data, num_representative,
                                           inference.model_output_stride(model))
            logging.info("int8 calibration on %d training images", len(images))
        tflite.convert_tflite(model, path, image_size, crop_size, quantize, images,
                              class_table)
    else:
        from deeplab_tf.export import onnx
        onnx.convert_onnx(model, path, image_size, crop_size, class_table)
    if class_table is not None:
        classes.write(class_table, export_dir)
    return path


def evaluate_file(config, path, threads=2, verbose=True, class_table=None):
    """(result dict, printable table) of the exported file at `path` on config.eval.split."""
    import deeplab_tf.data
    from deeplab_tf.export import runner
    deployed = runner.load(path, threads)
    dataset = deeplab_tf.data.eval_input(config.data, config.eval.split, None,
                                         (deployed.height, deployed.width))
    count = int(dataset.cardinality())
    table = deployed.class_table or class_table
    confusion = evaluator.evaluate(deployed.predict_fn,
                                   evaluator.examples_from_eval_input(dataset),
                                   config.model.num_classes,
                                   None if table is None else list(table.names),
                                   config.data.ignore_label,
                                   num_examples=count if count > 0 else None, verbose=verbose)
    result = confusion.result()
    text = metrics.format_table(result, title=f"{path} on {config.data.dataset}/"
                                              f"{config.eval.split}")
    atomic.write_json(f"{path}.eval_{config.eval.split}.json",  # model.tflite.eval_val.json
                      dict(result, file=path, split=config.eval.split), indent=2)
    return result, text
