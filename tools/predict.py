"""Predicts segmentation masks for image files with a training run's checkpoint.

    python -m tools.predict --workdir=runs/demo --input=photo.jpg,more_photos/ \
        --output=runs/demo/predictions

For each input image (JPEG or PNG; a directory means the images in it) writes
  OUTPUT/labels/NAME.png    class ids as a palette PNG (the VOC ground-truth format)
  OUTPUT/colors/NAME.png    the coloured mask (VOC palette, or Cityscapes colours)
  OUTPUT/overlays/NAME.png  the mask blended over the image
Inference is whole-image at the config's evaluation output stride, scales and flip
(paper 4.1, 4.3) unless flags say otherwise. A file that cannot be read is reported and
skipped; the others are still done (exit status 1 if any was skipped).
"""
import os
import sys

from absl import app, flags

flags.DEFINE_string("workdir", None, "Training work dir (config.json, checkpoints/).")
flags.DEFINE_list("input", None, "Image files and/or directories of images.")
flags.DEFINE_string("output", None, "Directory for labels/, colors/ and overlays/.")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix or directory (default: latest).")
flags.DEFINE_integer("output_stride", None, "Default: the config's eval.output_stride.")
flags.DEFINE_list("scales", None, "Input scales; default: the config's eval.scales.")
flags.DEFINE_bool("flip", None, "Average left-right flips; default: the config's eval.flip.")
flags.DEFINE_enum("colormap", "auto", ["auto", "voc", "cityscapes"],
                  "auto: from the config's data set.")
flags.mark_flags_as_required(["workdir", "input", "output"])
FLAGS = flags.FLAGS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_inputs(entries):
    """Files named directly, plus the JPEG/PNG files of named directories (sorted)."""
    files = []
    for entry in entries:
        if os.path.isdir(entry):
            files += sorted(os.path.join(entry, name) for name in os.listdir(entry)
                            if name.lower().endswith(IMAGE_EXTENSIONS))
        else:
            files.append(entry)
    return files


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    files = list_inputs(FLAGS.input)
    if not files:
        raise app.UsageError(f"no images in --input={','.join(FLAGS.input)}")
    import numpy as np
    import tensorflow as tf
    from deeplab_tf import config as config_lib
    from deeplab_tf import evaluation, visualization
    from deeplab_tf.export import serving

    try:
        config = evaluation.read_config(FLAGS.workdir)
        checkpoint = evaluation.resolve_checkpoint(FLAGS.workdir, FLAGS.checkpoint)
    except FileNotFoundError as error:
        sys.exit(f"tools.predict: {error}")
    settings = config_lib.override_eval(config, FLAGS.output_stride, FLAGS.scales, FLAGS.flip)
    output_stride, scales, flip = settings.output_stride, settings.scales, settings.flip
    colormap = config.data.dataset if FLAGS.colormap == "auto" else FLAGS.colormap
    class_names, palette = visualization.dataset_info(colormap)
    if len(class_names) != config.model.num_classes:
        class_names = [str(c) for c in range(config.model.num_classes)]
    try:
        model = evaluation.restore_model(config.model, checkpoint, output_stride)
    except ValueError as error:
        sys.exit(f"tools.predict: {error}")
    predict = evaluation.make_predict_fn(model, scales, flip,
                                         config_lib.eval_crop_size(settings))
    print(f"{len(files)} images; {checkpoint} at output stride "
          f"{evaluation.model_output_stride(model)}, scales {scales}, flip {flip}", flush=True)

    for sub in ("labels", "colors", "overlays"):
        os.makedirs(os.path.join(FLAGS.output, sub), exist_ok=True)
    failed = []
    for number, path in enumerate(files, 1):
        prefix = f"[{number}/{len(files)}] {path}"
        try:
            with open(path, "rb") as f:
                image = serving.decode_image(f.read())
        except (OSError, ValueError) as error:
            print(f"{prefix}: skipped: {error}", file=sys.stderr, flush=True)
            failed.append(path)
            continue
        labels = predict(tf.constant(image[None], tf.float32))[0].numpy()[0]
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        visualization.label_png(labels, palette).save(os.path.join(FLAGS.output, "labels", name))
        with open(os.path.join(FLAGS.output, "colors", name), "wb") as f:
            f.write(visualization.encode_png(visualization.colorize(labels, palette)))
        with open(os.path.join(FLAGS.output, "overlays", name), "wb") as f:
            f.write(visualization.encode_png(visualization.overlay(image, labels, palette)))
        present = ", ".join(class_names[c] for c in np.unique(labels))
        print(f"{prefix}: {image.shape[0]}x{image.shape[1]} -> {present}", flush=True)
    print(f"done: {len(files) - len(failed)} predicted, {len(failed)} skipped; "
          f"outputs in {FLAGS.output}", flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
