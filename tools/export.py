"""Exports a training run's checkpoint: a SavedModel for serving, or a TFLite / ONNX file.

    python -m tools.export --workdir=runs/demo --export_dir=runs/demo/export
    python -m tools.export --workdir=runs/voc --export_dir=/srv/deeplab/1 \
        --output_stride=8 --scales=0.5,0.75,1.0,1.25,1.5,1.75 --flip --probabilities
    python -m tools.export --workdir=runs/demo --format=tflite --quantize=int8
    python -m tools.export --workdir=runs/demo --format=onnx

Signatures (see deeplab_tf/export/saved_model.py and serving.py):
  serving_default: images string [N] (JPEG/PNG bytes) -> labels, heights, widths, status
  serve_images:    images uint8 [B,H,W,3]             -> labels
(+ probabilities with --probabilities). Output stride, scales and flip are baked in; they
default to the config's eval section. Inspect with `saved_model_cli show --dir DIR --all`.
The run's class table (names, colours, ignore value) goes into DIR/assets/classes.json and
DIR/deeplab_export.json, so that whoever serves the model knows what each label means.
--format=tflite|onnx writes DIR/model[_float16|_int8].tflite or DIR/model.onnx instead, with
DIR/classes.json: single scale, no flip, uint8 [1,H,W,3] images of the evaluation crop in.
DIR/assets.extra/tf_serving_warmup_requests holds one warm-up request per signature (an
image of --warmup_size pixels a side), which TF Serving runs before it serves.
The SavedModel serves batch norm folded into the convolutions (--nofold_batch_norm: the graph
as trained); DIR/deeplab_export.json records which.
--max_pixels, --max_side, --max_canvas_pixels, --max_images, --max_request_pixels bound what
a request may cost (docs/serving.md); they go into DIR/deeplab_export.json. DIR is written
as a new directory and then renamed into place: a previous export there is replaced
whole, a directory holding other files is refused.
"""
import os

from absl import app, flags, logging

from deeplab_tf import console

flags.DEFINE_string("workdir", None, "Training work dir (config.json, checkpoints/).")
flags.DEFINE_string("export_dir", None, "Where to write the SavedModel (default WORKDIR/export).")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix or directory (default: latest).")
flags.DEFINE_integer("output_stride", None, "Default: the config's eval.output_stride.")
flags.DEFINE_list("scales", None, "Input scales; default: the config's eval.scales.")
flags.DEFINE_bool("flip", None, "Average left-right flips; default: the config's eval.flip.")
flags.DEFINE_bool("probabilities", False, "Also output the class probabilities.")
# What one serving request may cost (deeplab_tf/export/serving.py, docs/serving.md); the
# defaults (serving.DEFAULT_BOUNDS) are sized for a 16 GB server.
flags.DEFINE_integer("max_pixels", None, "Refuse images of more pixels (height x width; "
                     "default 2048*2048).")
flags.DEFINE_integer("max_side", None, "Refuse images whose canvas (the image padded to the "
                     "evaluation crop) has a side over this (default 4097).")
flags.DEFINE_integer("max_canvas_pixels", None, "Refuse images whose canvas has more pixels "
                     "(default 2049*2049).")
flags.DEFINE_integer("max_images", None, "Serve at most this many images of a request "
                     "(default 64).")
flags.DEFINE_integer("max_request_pixels", None, "Per request, the sum of the served images' "
                     "canvases and the labels output N x max H x max W (default 2*2049*2049).")
BOUND_FLAGS = ("max_pixels", "max_side", "max_canvas_pixels", "max_images",
               "max_request_pixels")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "onnx"],
                  "saved_model, or one deployable file (EXPORT_DIR/model*.tflite|.onnx with "
                  "classes.json; single scale, fixed evaluation-crop input size).")
flags.DEFINE_enum("quantize", "none", ["none", "float16", "int8"],
                  "TFLite: float32 (none), float16 weights, or full-integer int8.")
flags.DEFINE_integer("num_representative", 100, "int8: training images to calibrate on.")
flags.DEFINE_integer("warmup_size", None, "Side of the warm-up requests' image (default: "
                     "the evaluation crop's shorter side; 0: no warm-up requests).")
flags.DEFINE_bool("fold_batch_norm", True, "SavedModel: serve a copy with batch norm folded "
                  "into the convolutions (the checkpoint is not changed); "
                  "--nofold_batch_norm serves the graph as trained.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from deeplab_tf import config as config_lib
    from deeplab_tf import classes, evaluation
    from deeplab_tf.export import saved_model, serving

    config = evaluation.read_config(FLAGS.workdir)
    checkpoint = evaluation.resolve_checkpoint(FLAGS.workdir, FLAGS.checkpoint)
    export_dir = FLAGS.export_dir or os.path.join(FLAGS.workdir, "export")
    settings = config_lib.override_eval(config, FLAGS.output_stride, FLAGS.scales, FLAGS.flip)
    output_stride, scales, flip = settings.output_stride, settings.scales, settings.flip
    model = evaluation.restore_model(config.model, checkpoint, output_stride)
    class_table = classes.of_run(FLAGS.workdir, config)
    crop_size = config_lib.eval_crop_size(settings)
    # Any image up to the crop is padded to it, so a warm-up image of the crop's shorter
    # side gives the shapes of real requests.
    default_warmup = min(crop_size) if crop_size else config.data.crop_size
    warmup_size = default_warmup if FLAGS.warmup_size is None else FLAGS.warmup_size
    # TF logs every renamed capture of the traced graph at INFO: thousands of lines.
    logging.set_verbosity(logging.WARNING)
    if FLAGS.format != "saved_model":
        from deeplab_tf.export import deploy
        path = deploy.export_file(model, config, export_dir, FLAGS.format, FLAGS.quantize,
                                  FLAGS.num_representative, crop_size=crop_size or (
                                      config.data.crop_size,) * 2, class_table=class_table)
        print(f"{FLAGS.format} ({FLAGS.quantize}) of {checkpoint} in {path}", flush=True)
        return
    bounds = serving.DEFAULT_BOUNDS._replace(**{
        name: FLAGS[name].value for name in BOUND_FLAGS if FLAGS[name].value is not None})
    metadata = saved_model.export_saved_model(
        model, export_dir, scales=scales, flip=flip, probabilities=FLAGS.probabilities,
        bounds=bounds, class_table=class_table, crop_size=crop_size,
        warmup_size=warmup_size or None, fold_batch_norm=FLAGS.fold_batch_norm)
    print(f"SavedModel of {checkpoint} in {export_dir}: output stride "
          f"{metadata['output_stride']}, scales {metadata['scales']}, flip {metadata['flip']}, "
          f"batch norm folded: {metadata['folded_batch_norms']} of {metadata['batch_norms']}",
          flush=True)
    print("bounds: " + ", ".join(f"{k}={v}" for k, v in metadata["bounds"].items()),
          flush=True)
    if metadata["warmup_size"]:
        print(f"warm-up requests ({warmup_size}x{warmup_size}) in "
              f"{os.path.join(export_dir, saved_model.WARMUP_FILE)}", flush=True)


if __name__ == "__main__":
    console.run(main)
