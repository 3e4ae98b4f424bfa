"""Pictures of a run: a contact sheet, training curves, per-class IoU bars (PNG files).

The contact sheet is paper Figure 6's layout (image | ground truth | prediction, one row per
image) with a legend of the classes shown, in the colours of the run's class table (the
legend alone is a picture too, for tools.predict's masks); the curves plot the TensorBoard
scalars the trainer writes (`loss`, `learning_rate`, `mean_iou` of the training batches)
and the evaluation's `eval/miou` where a checkpoint was evaluated; the bar chart is the
per-class IoU of `tools.evaluate` (paper Tables 6-7 list the same numbers). matplotlib
draws them without a display (Agg).
"""
import io

import numpy as np
from PIL import Image

from deeplab_tf import visualization


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    return pyplot


def _legend(pyplot, figure, class_ids, class_names, palette, columns):
    handles = [pyplot.Rectangle((0, 0), 1, 1, color=np.asarray(palette[c]) / 255.0)
               for c in class_ids]
    figure.legend(handles, [class_names[c] for c in class_ids], loc="lower center",
                  ncol=min(columns, len(handles)), frameon=False, fontsize=8)


def contact_sheet(path, rows, class_table, titles=("image", "ground truth", "prediction"),
                  dpi=80):
    """Writes a PNG: one row per (name, image HxWx3, ground truth HxW, prediction HxW).

    Ground truth and prediction are drawn in the colours of `class_table` (a
    `classes.ClassTable`; its ignore label in its ignore colour); the legend names every
    class present in either. Returns `path`.
    """
    pyplot = _pyplot()
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    class_names, palette = class_table.names, class_table.palette()
    present = sorted(set().union(*(
        set(np.unique(label).tolist()) | set(np.unique(prediction).tolist())
        for _, _, label, prediction in rows)) - {class_table.ignore_label})
    figure, axes = pyplot.subplots(len(rows), 3, figsize=(6, 2 * len(rows) + 0.6),
                                   squeeze=False)
    for row, (name, image, label, prediction) in enumerate(rows):
        pictures = (np.clip(image, 0, 255).astype(np.uint8),
                    visualization.colorize(label, palette),
                    visualization.colorize(prediction, palette))
        for column, picture in enumerate(pictures):
            axis = axes[row, column]
            axis.imshow(picture, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[column], fontsize=9)
        axes[row, 0].set_ylabel(name, fontsize=8)
    _legend(pyplot, figure, present, class_names, palette, columns=5)
    figure.tight_layout(rect=(0, 0.5 / (2 * len(rows) + 0.6), 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    pyplot.close(figure)
    exact = [palette[c] for c in present + [class_table.ignore_label]]
    _few_colours(Image.open(buffer).convert("RGB"), exact).save(path, optimize=True)
    return path


def legend(path, class_table, dpi=80):
    """Writes a PNG naming every class of `class_table` beside its colour (id: name), and
    the ignore value's colour; for masks drawn in those colours. Returns `path`."""
    pyplot = _pyplot()
    entries = [(f"{i}: {name}", colour) for i, (name, colour) in
               enumerate(zip(class_table.names, class_table.colors))]
    entries.append((f"{class_table.ignore_label}: ignored", class_table.ignore_color))
    figure = pyplot.figure(figsize=(3, 0.25 * len(entries) + 0.2))
    handles = [pyplot.Rectangle((0, 0), 1, 1, facecolor=np.asarray(colour) / 255.0,
                                edgecolor="black", linewidth=0.5) for _, colour in entries]
    figure.legend(handles, [text for text, _ in entries], loc="center", frameon=False,
                  fontsize=9)
    figure.savefig(path, dpi=dpi)
    pyplot.close(figure)
    return path


def _few_colours(picture, exact, colours=128):
    """The picture in `colours` colours, without dithering (a third of the bytes: the sheet
    is meant for a README); the `exact` colours (the masks') are kept exactly."""
    exact = [tuple(int(v) for v in colour) for colour in exact]
    adaptive = picture.quantize(colors=colours - len(exact), dither=Image.Dither.NONE)
    entries = exact + [tuple(adaptive.getpalette()[i:i + 3])
                       for i in range(0, 3 * (colours - len(exact)), 3)]
    entries += [entries[0]] * (256 - len(entries))  # a P image's palette has 256 entries
    reference = Image.new("P", (1, 1))
    reference.putpalette([v for entry in entries for v in entry])
    return picture.quantize(palette=reference, dither=Image.Dither.NONE)


def read_scalars(logdir):
    """{tag: (steps, values)} of the TensorBoard scalars in `logdir`'s event files."""
    from tensorboard.backend.event_processing import event_accumulator
    accumulator = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    accumulator.Reload()
    scalars = {}
    # tf.summary (TF 2) writes scalars as tensors; older writers as scalars.
    for tag in accumulator.Tags().get("tensors", []):
        events = accumulator.Tensors(tag)
        values = [np.asarray(_tensor_value(e.tensor_proto)) for e in events]
        if values and all(v.ndim == 0 for v in values):  # not the image summaries
            scalars[tag] = (np.array([e.step for e in events]),
                            np.array([float(v) for v in values]))
    for tag in accumulator.Tags().get("scalars", []):
        events = accumulator.Scalars(tag)
        scalars[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return scalars


def _tensor_value(proto):
    from tensorboard.util import tensor_util
    return tensor_util.make_ndarray(proto)


def training_curves(path, train_scalars, eval_scalars=None, title=None, dpi=80):
    """Writes a PNG of loss, learning rate and mIoU (train batches; val where evaluated)."""
    pyplot = _pyplot()
    eval_scalars = eval_scalars or {}
    figure, (loss_axis, lr_axis, miou_axis) = pyplot.subplots(1, 3, figsize=(10, 3))
    for tag, axis, label in (("loss", loss_axis, "loss"), ("cross_entropy", loss_axis,
                                                            "cross-entropy"),
                             ("learning_rate", lr_axis, "learning rate"),
                             ("mean_iou", miou_axis, "train mIoU (batches)")):
        if tag in train_scalars:
            steps, values = train_scalars[tag]
            axis.plot(steps, values, label=label)
    if "eval/miou" in eval_scalars:
        steps, values = eval_scalars["eval/miou"]
        miou_axis.plot(steps, values, "o-", label="val mIoU")
    miou_axis.set_ylim(0, 1)
    return _save_step_axes(pyplot, figure, ((loss_axis, "loss"), (lr_axis, "learning rate"),
                                            (miou_axis, "mIoU")), path, title, dpi)


def _save_step_axes(pyplot, figure, named_axes, path, title, dpi, legend_size=8):
    """Labels each (axis, name) over steps, adds their legends; saves and closes."""
    for axis, name in named_axes:
        axis.set_xlabel("step")
        axis.set_title(name, fontsize=10)
        axis.grid(alpha=0.3)
        if axis.has_data() and axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=legend_size)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    pyplot.close(figure)
    return path


def per_class_iou_chart(path, result, palette, title=None, dpi=80):
    """Writes a bar chart PNG of a `ConfusionMatrix.result()`'s per-class IoU (percent).

    Bars in the class colours; absent classes (no IoU) are named but have no bar; a dashed
    line marks the mIoU.
    """
    pyplot = _pyplot()
    names = list(result["per_class_iou"])
    values = [result["per_class_iou"][n] for n in names]
    figure, axis = pyplot.subplots(figsize=(max(4, 0.4 * len(names) + 1), 3.5))
    shown = [100 * v if v is not None else 0.0 for v in values]
    colours = [np.asarray(palette[c]) / 255.0 for c in range(len(names))]
    axis.bar(range(len(names)), shown, color=colours, edgecolor="black", linewidth=0.5)
    for i, value in enumerate(values):
        if value is None:
            axis.text(i, 1, "absent", rotation=90, ha="center", va="bottom", fontsize=7)
    if result["miou"] is not None:
        axis.axhline(100 * result["miou"], color="black", linestyle="--", linewidth=1,
                     label=f"mIoU {100 * result['miou']:.2f}%")
        axis.legend(fontsize=8, loc="upper right")
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    axis.set_ylim(0, 100)
    axis.set_ylabel("IoU (%)")
    if title:
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    pyplot.close(figure)
    return path


def compare_runs(path, runs, title=None, dpi=80):
    """Writes a PNG comparing runs: {label: (train scalars, eval scalars)} as `read_scalars`
    returns them; the training loss of each, and its val mIoU where evaluated (train
    batches' mIoU dotted)."""
    pyplot = _pyplot()
    figure, (loss_axis, miou_axis) = pyplot.subplots(1, 2, figsize=(9, 3.2))
    for number, (label, (train, evaluated)) in enumerate(runs.items()):
        colour = f"C{number}"
        if "loss" in train:
            loss_axis.plot(*train["loss"], color=colour, label=label)
        if "mean_iou" in train:
            miou_axis.plot(*train["mean_iou"], ":", color=colour, alpha=0.7,
                           label=f"{label}: train batches")
        if "eval/miou" in (evaluated or {}):
            steps, values = evaluated["eval/miou"]
            miou_axis.plot(steps, values, "o-", color=colour,
                           label=f"{label}: val ({100 * values[-1]:.1f}% at {steps[-1]})")
    miou_axis.set_ylim(0, 1)
    return _save_step_axes(pyplot, figure, ((loss_axis, "training loss"), (miou_axis, "mIoU")),
                           path, title, dpi, legend_size=7)
