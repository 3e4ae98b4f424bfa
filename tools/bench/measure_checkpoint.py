"""Size of a training checkpoint at the paper's setting, by part (issue 11).

    python -m tools.bench.measure_checkpoint --workdir=/tmp/ckpt_size --num_images=1100
    python -m tools.bench.measure_checkpoint --workdir=/tmp/ckpt_size --data_dir=~/tfds \
        --experiment=voc_stage1 --set=data.train_split=train_aug

Builds the experiment's trainer under the default strategy (voc_stage1: ResNet-101, crop
513, batch 16, shuffle buffer 1000), pulls a few batches so the input pipeline's buffers
fill as in training, saves a checkpoint and prints one JSON line of MiB: the whole
checkpoint and each part written alone (the optimizer's part includes the weights it
tracks). Without --data_dir it generates --num_images VOC-sized JPEG scenes
(tools.bench.benchmark_input) and reads them as synthetic_voc: more than the shuffle buffer's
1,000, so that it fills as it does on VOC.
"""
import glob
import json
import os
import tempfile
import time

from absl import app, flags

from tools.bench import benchmark_input  # its --data_dir and --num_images flags

flags.DEFINE_string("experiment", "voc_stage1", "Experiment whose checkpoint to measure.")
flags.DEFINE_string("workdir", None, "Where the checkpoint is written.")
flags.DEFINE_multi_string("set", [], "Config overrides.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def _mib(prefix):
    return round(sum(os.path.getsize(p) for p in glob.glob(prefix + ".*")) / 2 ** 20, 1)


def main(argv):
    import tensorflow as tf
    from deeplab_tf import config as config_lib
    from deeplab_tf.train import loop
    overrides = list(FLAGS.set)
    if not FLAGS.data_dir:
        data_dir, _ = benchmark_input.generate(tempfile.mkdtemp(), FLAGS.num_images, 90)
        overrides += ["data.dataset=synthetic_voc", "data.train_split=train"]
    else:
        data_dir = FLAGS.data_dir
    config = config_lib.load_experiment(FLAGS.experiment,
                                        [f"data.data_dir={data_dir}", *overrides])
    trainer = loop.Trainer(config, FLAGS.workdir)
    for _ in range(3):
        next(trainer.iterator)
    time.sleep(20)  # the prefetch and map buffers fill as they would while a step runs
    sizes = dict(checkpoint=_mib(trainer.manager.save(checkpoint_number=0)))
    for name, part in (("model", trainer.model), ("optimizer", trainer.optimizer),
                       ("iterator", trainer.iterator)):
        sizes[name] = _mib(tf.train.Checkpoint(**{name: part}).write(
            os.path.join(FLAGS.workdir, "part_" + name)))
    print(json.dumps(dict(sizes, unit="MiB", crop=config.data.crop_size,
                          batch=config.train.batch_size,
                          shuffle_buffer=config.data.shuffle_buffer)), flush=True)


if __name__ == "__main__":
    app.run(main)
