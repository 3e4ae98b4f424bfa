"""TensorBoard event files read back for the tests, with TensorFlow's own reader."""
import glob
import os

import tensorflow as tf


def read(logdir, image=lambda tensor, tag: tensor):
    """{tag: {step: float (scalars), str (text: the run's recipe) or image(tensor, tag)
    (the rest)}} from every event file under `logdir`; a later file's value for a step
    overrides an earlier one's."""
    found = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "scalars":
                    found.setdefault(value.tag, {})[event.step] = float(tensor)
                elif plugin == "text":
                    found.setdefault(value.tag, {})[event.step] = "\n".join(
                        t.decode() for t in tensor.reshape(-1))
                else:
                    found.setdefault(value.tag, {})[event.step] = image(tensor, value.tag)
    return found
