"""Your own data (a `custom_seg/NAME` set from tools.build_dataset): the paper's recipe,
with defaults for a small data set (a few hundred images), any classes.

    # from the demo's run (21 synthetic VOC classes): the head starts fresh
    python -m tools.train --experiment=custom --workdir=runs/mine \
        --set data.dataset=custom_seg/mine --set data.data_dir=~/tensorflow_datasets \
        --set train.init_checkpoint=runs/demo/train_run
    # or from TF-slim's ImageNet ResNet-50 (paper 4.1)
    python -m tools.train --experiment=custom --workdir=runs/mine \
        --set data.dataset=custom_seg/mine --set data.data_dir=~/tensorflow_datasets \
        --set train.init_checkpoint=PATH/resnet_v1_50.ckpt
    python -m tools.evaluate --workdir=runs/mine
    python -m tools.predict --workdir=runs/mine --input=photos/ --output=runs/mine/masks
    python -m tools.export --workdir=runs/mine

The class count, names and colours come from the data set (its TFDS metadata): the model
gets as many logits as it has classes, and WORKDIR/classes.json carries them on to the
evaluation table, the pictures and the exports. Bootstrapping and class loss weights take
class names as well as ids, e.g.
    --set "data.bootstrap_classes=('bicycle',)" --set data.bootstrap_factor=2
    --set "train.class_loss_weights={'bicycle': 3.0}"      # the other classes weigh 1
An unknown name is refused, naming the data set's classes.

From the paper (4.1): DeepLabv3 with ASPP (6, 12, 18) + image pooling at output stride 16,
multi-grid (1, 2, 4), random crops (513 px, scales 0.5-2, flips), momentum SGD at 0.007
with the poly schedule, evaluated on the whole image (padded to 513) at output stride 16.
For a small data set:
- ResNet-50 rather than 101: half the weights to fit to a few hundred images, and the
  depth of the demo's run and of TF-slim's resnet_v1_50 (both start this experiment).
- Batch norm as the batch allows: the paper trains it with a batch of 16; below about 12
  images per batch the batch statistics are too noisy (the authors' fine_tune_batch_norm
  advice), so with the default batch of 8 it is frozen (the statistics of the starting
  checkpoint, gamma and beta still learn). With a batch of 16:
  --set train.batch_size=16 --set train.freeze_batch_norm=false. From scratch
  (train.init_checkpoint=none) there are no statistics to keep: train batch norm.
- 3000 steps (about 60 passes over 400 images at batch 8), a checkpoint every 500.
- train.initialize_last_layer=false: the head (ASPP, image pooling, projection, logits)
  starts fresh, so any trained run serves as the start whatever its classes; the log names
  the layers that did. --set train.last_layers_contain_logits_only=true keeps the trained
  ASPP and starts only the logits fresh; --set train.initialize_last_layer=true loads the
  whole model (a run on the same classes).
"""
from deeplab_tf import config as config_lib

BATCH_NORM_MIN_BATCH = 12  # below it, batch norm stays frozen (the authors' advice)


def get_config():
    config = config_lib.ExperimentConfig()
    config.data.dataset = "custom_seg/mine"  # --set data.dataset=custom_seg/YOUR_NAME
    config.model.num_classes = None  # the data set's (its class table)
    config.data.num_classes = None
    config.data.train_split = "train"
    config.data.eval_split = "val"
    config.model.depth = 50
    config.model.output_stride = 16
    config.model.multi_grid = (1, 2, 4)
    config.train.steps = 3000
    config.train.batch_size = 8
    config.train.freeze_batch_norm = config.train.batch_size < BATCH_NORM_MIN_BATCH
    config.train.initialize_last_layer = False
    config.train.checkpoint_every = 500
    config.train.image_summary_every = 250
    config.eval.split = "val"
    config.eval.output_stride = 16
    config.paper = config_lib.PaperConfig(protocol="own_data")
    return config
