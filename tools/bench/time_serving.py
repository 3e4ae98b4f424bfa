"""Times an exported SavedModel as a fresh server process meets it: load, first, steady.

    python -m tools.bench.time_serving --export_dir=runs/demo/train_run/export --size=513
    python -m tools.bench.time_serving --export_dir=... --size=513 --warm_up   # run the records

Prints one JSON line: seconds to import TensorFlow, to `tf.saved_model.load`, to run the
export's warm-up records (--warm_up), the first request and the median of the next
--steady requests, for one size x size JPEG through `serving_default` (bytes) or one uint8
image through `serve_images` (--signature). Each run is a new process: run it a few times
on a shared machine. deeplab_tf is not imported beyond this tool's console set-up, as a
server would not.
"""
import json
import os
import statistics
import time

from absl import flags

from deeplab_tf import console
from tools.bench import cpu

flags.DEFINE_string("export_dir", None, "The SavedModel directory (tools.export's output).")
flags.DEFINE_integer("size", 513, "Side of the request's image in pixels.")
flags.DEFINE_enum("signature", "serving_default", ["serving_default", "serve_images"],
                  "Which signature to time.")
flags.DEFINE_integer("steady", 3, "Requests after the first; their median is reported.")
flags.DEFINE_bool("warm_up", False, "Run assets.extra/tf_serving_warmup_requests first, "
                  "as TF Serving does while it loads the model.")
flags.mark_flag_as_required("export_dir")
FLAGS = flags.FLAGS

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def request(tf, size):
    """One size x size image with some structure, as the signature takes it."""
    ramp = tf.cast(tf.linspace(0.0, 255.0, size), tf.uint8)
    image = tf.stack([tf.tile(ramp[:, None], [1, size]), tf.tile(ramp[None, :], [size, 1]),
                      tf.fill([size, size], tf.constant(128, tf.uint8))], -1)
    if FLAGS.signature == "serving_default":
        return {"images": tf.io.encode_jpeg(image, quality=90)[None]}
    return {"images": image[None]}


def warm_up(tf, loaded, export_dir):
    from tensorflow_serving.apis import prediction_log_pb2
    count = 0
    for record in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE)):
        request_proto = prediction_log_pb2.PredictionLog.FromString(
            record.numpy()).predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request_proto.inputs.items()}
        loaded.signatures[request_proto.model_spec.signature_name](**inputs)
        count += 1
    return count


def main(argv):
    del argv
    start = time.perf_counter()
    tf = console.load_tensorflow(FLAGS.verbosity)
    figures = {"import_s": time.perf_counter() - start}
    start = time.perf_counter()
    loaded = tf.saved_model.load(FLAGS.export_dir)
    figures["load_s"] = time.perf_counter() - start
    if FLAGS.warm_up:
        start = time.perf_counter()
        figures["warmup_requests"] = warm_up(tf, loaded, FLAGS.export_dir)
        figures["warmup_s"] = time.perf_counter() - start
    function = loaded.signatures[FLAGS.signature]
    inputs = request(tf, FLAGS.size)
    times = []
    for _ in range(1 + FLAGS.steady):
        start = time.perf_counter()
        outputs = function(**inputs)
        outputs["labels"].numpy()
        times.append(time.perf_counter() - start)
    figures.update(first_request_s=times[0], steady_request_s=statistics.median(times[1:]),
                   size=FLAGS.size, signature=FLAGS.signature,
                   labels_shape=list(outputs["labels"].shape), cpu=cpu.line())
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in figures.items()}), flush=True)


if __name__ == "__main__":
    console.run(main, tensorflow=False)
