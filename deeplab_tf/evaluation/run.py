"""Evaluating one checkpoint of a training run over its split (paper Section 4, Tables 4-7).

The one place where a work dir's checkpoint becomes a model at the evaluation output
stride, runs over `data.eval_input` padded to `eval.crop_size` with the configured scales
and flips, and writes WORKDIR/eval: results.json, results_<step>.json and .txt, the
TensorBoard scalars and the per-class IoU chart (per_class_iou_<step>.png), with the names
and colours of the run's class table (WORKDIR/classes.json). `tools.evaluate`,
`tools.evaluate --watch` and the `evaluator` task of a training cluster all call it. The
table it returns ends with the paper's figure for the evaluated settings beside the mIoU
and the run's departures from the paper's recipe (`deeplab_tf.recipe.result_lines`), so
a number never travels without its conditions.
"""
import os

from absl import logging

from deeplab_tf import classes
from deeplab_tf import config as config_lib
from deeplab_tf import recipe
from deeplab_tf.evaluation import checkpoints, evaluator, inference


def evaluate_checkpoint(config, workdir, checkpoint, verbose=True):
    """Evaluates `checkpoint` with `config.eval`'s settings; writes WORKDIR/eval.

    Returns (step, result dict of `ConfusionMatrix.result`, the printable table followed
    by `paper_lines`).
    """
    import deeplab_tf.data  # registers the TFDS builders
    step = evaluator.checkpoint_step(checkpoint)
    class_table = classes.of_run(workdir, config)  # names in the table, colours in the chart
    model = checkpoints.restore_model(config.model, checkpoint, config.eval.output_stride)
    output_stride = inference.model_output_stride(model)
    crop_size = config_lib.eval_crop_size(config.eval)  # None: smallest OS*k+1
    predict = inference.make_predict_fn(model, config.eval.scales, config.eval.flip,
                                        crop_size)
    dataset = deeplab_tf.data.eval_input(config.data, config.eval.split, output_stride,
                                         crop_size)
    logging.info("evaluating %s (step %d) on %s/%s at output stride %d, scales %s, flip %s",
                 checkpoint, step, config.data.dataset, config.eval.split, output_stride,
                 config.eval.scales, config.eval.flip)
    count = int(dataset.cardinality())  # TFDS splits know their size; else -1 or -2
    confusion = evaluator.evaluate(predict, evaluator.examples_from_eval_input(dataset),
                                   config.model.num_classes, class_table.names,
                                   config.data.ignore_label,
                                   num_examples=count if count > 0 else None,
                                   verbose=verbose)
    settings = dict(checkpoint=checkpoint, dataset=config.data.dataset,
                    split=config.eval.split, output_stride=output_stride,
                    scales=list(config.eval.scales), flip=config.eval.flip,
                    crop_size=list(crop_size) if crop_size else "smallest")
    result = confusion.result()
    table = evaluator.write_results(workdir, result, step, settings)
    write_chart(config, workdir, result, step, class_table)
    logging.info("step %d: mIoU %s on %s/%s", step, result["miou"], config.data.dataset,
                 config.eval.split)
    return step, result, table + "\n" + paper_lines(config, result)


def paper_lines(config, result):
    """The paper's figure for `config.eval`'s settings beside `result`'s mIoU, then the
    recipe table; a config whose paper section is unusable says so instead of failing
    the evaluation it follows."""
    try:
        return "\n".join(recipe.result_lines(config, result["miou"]))
    except ValueError as error:
        return f"recipe: {error}"


def write_chart(config, workdir, result, step, class_table):
    """WORKDIR/eval/per_class_iou_<step>.png: the table as bars in the class colours."""
    from deeplab_tf import plots
    path = os.path.join(workdir, evaluator.EVAL_DIR, f"per_class_iou_{step}.png")
    plots.per_class_iou_chart(path, result, class_table.palette(), title=(
        f"{config.name or workdir}, step {step}: {config.data.dataset}/"
        f"{config.eval.split}, OS {config.eval.output_stride}, scales "
        f"{list(config.eval.scales)}, flip {config.eval.flip}"))
    logging.info("per-class IoU chart: %s", path)
    return path
