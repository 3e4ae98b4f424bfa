"""Generates the synthetic segmentation set in the PASCAL VOC layout.

    python -m tools.make_synthetic --output_dir=data/synthetic_src
    python -m tools.build_dataset --dataset=synthetic_voc \
        --manual_dir=data/synthetic_src --data_dir=data/tfds

Deterministic in --seed: the same flags give the same files.
"""
from absl import flags

from deeplab_tf import console

flags.DEFINE_string("output_dir", None, "Directory to write the VOC layout into.")
flags.DEFINE_integer("seed", 0, "Seed of the scenes.")
flags.DEFINE_integer("num_train", 300, "Images in the train split.")
flags.DEFINE_integer("num_val", 60, "Images in the val split.")
flags.DEFINE_integer("min_size", 100, "Smallest image side, in pixels.")
flags.DEFINE_integer("max_size", 180, "Largest image side, in pixels.")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not 8 <= FLAGS.min_size <= FLAGS.max_size:
        raise ValueError(f"need 8 <= --min_size <= --max_size, got {FLAGS.min_size} and "
                         f"{FLAGS.max_size}")
    from deeplab_tf import synthetic
    splits = synthetic.generate(FLAGS.output_dir, seed=FLAGS.seed, num_train=FLAGS.num_train,
                                num_val=FLAGS.num_val, min_size=FLAGS.min_size,
                                max_size=FLAGS.max_size)
    counts = ", ".join(f"{split} {len(names)}" for split, names in splits.items())
    print(f"wrote {FLAGS.output_dir} ({counts})")


if __name__ == "__main__":
    console.run(main, tensorflow=False)  # numpy and PIL only: no TensorFlow to wait for
