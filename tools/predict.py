"""Predicts segmentation masks for image files with a training run's checkpoint.

    python -m tools.predict --workdir=runs/demo --input=photo.jpg,more_photos/ \
        --output=runs/demo/predictions

For each input image (JPEG or PNG; a directory means the images in it) writes
  OUTPUT/labels/NAME.png    class ids as a palette PNG (the VOC ground-truth format)
  OUTPUT/colors/NAME.png    the coloured mask, in the colours of the run's classes
  OUTPUT/overlays/NAME.png  the mask blended over the image
and once OUTPUT/legend.png (each class's colour, id and name) and OUTPUT/classes.json (the
run's class table: names, colours, ignore value).
Inference is whole-image at the config's evaluation output stride, scales and flip
(paper 4.1, 4.3) unless flags say otherwise. A JPEG's EXIF orientation (phone photos) is
applied first, so the masks line up with the picture as viewers show it (the SavedModel's
bytes signature, like TensorFlow's decoders, does not rotate). A file that cannot be read
is reported and skipped; the others are still done (exit status 1 if any was skipped),
as is an image over the serving bounds (--max_pixels, --max_side, --max_canvas_pixels: its
pixels, and the canvas it is padded to; docs/serving.md). Two inputs that would write the
same output files (a.jpg and a.png) are refused before anything is done, naming both.
Other files in a named directory (.webp, .txt, folders, ...) are listed with the reason.
"""
import os
import sys
import time

from absl import app, flags

from deeplab_tf import console

flags.DEFINE_string("workdir", None, "Training work dir (config.json, checkpoints/).")
flags.DEFINE_list("input", None, "Image files and/or directories of images.")
flags.DEFINE_string("output", None, "Directory for labels/, colors/ and overlays/.")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix or directory (default: latest).")
flags.DEFINE_string("model_file", None, "Predict with this exported .tflite/.onnx file "
                    "instead of a checkpoint (images up to its input size).")
flags.DEFINE_integer("output_stride", None, "Default: the config's eval.output_stride.")
flags.DEFINE_list("scales", None, "Input scales; default: the config's eval.scales.")
flags.DEFINE_bool("flip", None, "Average left-right flips; default: the config's eval.flip.")
flags.DEFINE_enum("colormap", "auto", ["auto", "voc", "cityscapes"],
                  "auto: the run's class colours (WORKDIR/classes.json).")
# The serving bounds (deeplab_tf/export/serving.py): an image over them is skipped, named.
flags.DEFINE_integer("max_pixels", None, "Skip images of more pixels (default 2048*2048).")
flags.DEFINE_integer("max_side", None, "Skip images whose canvas (padded to the evaluation "
                     "crop) has a side over this (default 4097).")
flags.DEFINE_integer("max_canvas_pixels", None, "Skip images whose canvas has more pixels "
                     "(default 2049*2049).")
flags.mark_flags_as_required(["workdir", "input", "output"])
FLAGS = flags.FLAGS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_inputs(entries):
    """(files, ignored): the files named directly plus the JPEG/PNG files of named
    directories (sorted), and (path, reason) for every other entry of those directories."""
    files, ignored = [], []
    for entry in entries:
        if not os.path.isdir(entry):
            files.append(entry)
            continue
        for name in sorted(os.listdir(entry)):
            path = os.path.join(entry, name)
            if os.path.isdir(path):
                ignored.append((path, "a directory (directories are not searched)"))
            elif not name.lower().endswith(IMAGE_EXTENSIONS):
                ignored.append((path, f"not a {'/'.join(IMAGE_EXTENSIONS)} file"))
            else:
                files.append(path)
    return files, ignored


def output_name(path):
    """The name of an input's output files: NAME.png for NAME.jpg/.jpeg/.png."""
    return os.path.splitext(os.path.basename(path))[0] + ".png"


def check_output_names(files):
    """Raises ValueError when two inputs would write the same output files, naming both."""
    first = {}
    for path in files:
        other = first.setdefault(output_name(path), path)
        if other != path:
            raise ValueError(f"{other} and {path} would both write {output_name(path)} "
                             f"(labels/, colors/, overlays/): rename one, or predict them "
                             f"into different --output directories")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    files, ignored = list_inputs(FLAGS.input)
    for path, reason in ignored:
        print(f"ignored {path}: {reason}", file=sys.stderr, flush=True)
    if not files:
        raise FileNotFoundError(f"no images in --input={','.join(FLAGS.input)}: name JPEG "
                                f"or PNG files, or folders holding them")
    files = list(dict.fromkeys(files))  # a file named twice is predicted once
    check_output_names(files)
    import numpy as np
    import tensorflow as tf
    from deeplab_tf import config as config_lib
    from deeplab_tf import classes, evaluation, plots, visualization
    from deeplab_tf.export import serving

    config = evaluation.read_config(FLAGS.workdir)
    checkpoint = evaluation.resolve_checkpoint(FLAGS.workdir, FLAGS.checkpoint)
    settings = config_lib.override_eval(config, FLAGS.output_stride, FLAGS.scales, FLAGS.flip)
    output_stride, scales, flip = settings.output_stride, settings.scales, settings.flip
    table = classes.of_run(FLAGS.workdir, config)
    if FLAGS.model_file:
        from deeplab_tf.export import runner
        deployed = runner.load(FLAGS.model_file)
        table = deployed.class_table or table  # the file's own classes.json wins
        labels_of = deployed.labels
        output_stride_of = 1  # the file's fixed input refuses larger images itself
        print(f"{len(files)} images; {FLAGS.model_file} ({deployed.kind}, "
              f"{deployed.height}x{deployed.width} input)", flush=True)
    else:
        model = evaluation.restore_model(config.model, checkpoint, output_stride)
        output_stride_of = evaluation.model_output_stride(model)
        predict = evaluation.make_predict_fn(model, scales, flip,
                                             config_lib.eval_crop_size(settings))
        labels_of = lambda image: predict(tf.constant(image[None], tf.float32))[0].numpy()[0]
        print(f"{len(files)} images; {checkpoint} at output stride "
              f"{evaluation.model_output_stride(model)}, scales {scales}, flip {flip}",
              flush=True)
    crop_size = config_lib.eval_crop_size(settings)
    bounds = serving.DEFAULT_BOUNDS._replace(**{
        name: FLAGS[name].value for name in ("max_pixels", "max_side", "max_canvas_pixels")
        if FLAGS[name].value is not None})
    class_names = table.names
    palette = (table.palette() if FLAGS.colormap == "auto"
               else classes.builtin(FLAGS.colormap).palette())

    for sub in ("labels", "colors", "overlays"):
        os.makedirs(os.path.join(FLAGS.output, sub), exist_ok=True)
    classes.write(table, FLAGS.output)
    legend = plots.legend(os.path.join(FLAGS.output, "legend.png"), table)
    print(f"classes: {', '.join(f'{i} {n}' for i, n in enumerate(class_names))} "
          f"(legend {legend})", flush=True)
    failed = []
    start = time.monotonic()
    for number, path in enumerate(files, 1):
        prefix = f"[{number}/{len(files)}] {path}"
        try:
            with open(path, "rb") as f:
                encoded = f.read()
            orientation = visualization.exif_orientation(encoded)
            # The bounds count the canvas of the image as stored: a quarter turn (EXIF 5-8)
            # meets the crop's sides the other way round.
            crop = None if FLAGS.model_file else crop_size
            if crop and orientation in (5, 6, 7, 8):
                crop = tuple(crop)[::-1]
            image = visualization.apply_exif_orientation(
                serving.decode_image(encoded, bounds, output_stride_of, crop), orientation)
            labels = labels_of(image)
        except (OSError, ValueError) as error:
            print(f"{prefix}: skipped: {error}", file=sys.stderr, flush=True)
            failed.append((path, str(error)))
            continue
        name = output_name(path)
        visualization.label_png(labels, palette).save(os.path.join(FLAGS.output, "labels", name))
        with open(os.path.join(FLAGS.output, "colors", name), "wb") as f:
            f.write(visualization.encode_png(visualization.colorize(labels, palette)))
        with open(os.path.join(FLAGS.output, "overlays", name), "wb") as f:
            f.write(visualization.encode_png(visualization.overlay(image, labels, palette)))
        present = ", ".join(class_names[c] for c in np.unique(labels))
        elapsed = time.monotonic() - start
        eta = console.duration(elapsed / number * (len(files) - number))
        print(f"{prefix}: {image.shape[0]}x{image.shape[1]} -> {present} "
              f"({elapsed / number:.1f} s/image, ETA {eta})", flush=True)
    print(f"done: {len(files) - len(failed)} predicted, {len(failed)} skipped; "
          f"outputs in {FLAGS.output}", flush=True)
    for path, reason in failed:
        print(f"skipped {path}: {reason}", file=sys.stderr, flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    console.run(main)
