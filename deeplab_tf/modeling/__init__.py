"""DeepLabv3 models in Keras 3 (keras.layers / keras.ops only; tested on the TensorFlow and
JAX backends)."""
from deeplab_tf.modeling.aspp import ASPP_RATES_AT_OS16, scaled_rates
from deeplab_tf.modeling.deeplabv3 import (DeepLabV3, deeplabv3, upsample_logits,
                                           with_upsampled_logits)
from deeplab_tf.modeling.batch_norm import (BatchNormalization, batch_norm_layers,
                                           freeze_batch_norm, synchronize_batch_norm)
from deeplab_tf.modeling.layers import MEAN_PIXEL, resize_bilinear
from deeplab_tf.modeling.resnet import (AtrousResNet, atrous_resnet, effective_output_stride,
                                        feature_size, plan_blocks)
from deeplab_tf.modeling.checkpoints import CheckpointMismatchError, load_init_weights
