"""Data sets as TFDS builders and the paper's input pipeline (paper 4.1, 4.3).

Importing this package registers the builders `pascal_voc_seg`, `synthetic_voc`,
`cityscapes_seg`, `coco_voc_seg` and `custom_seg` (one's own data, built as
`custom_seg/NAME`) with TFDS.
"""
from deeplab_tf.data.build import BUILDERS, build, count_report
from deeplab_tf.data.cityscapes import CityscapesSeg
from deeplab_tf.data.coco import CocoVocSeg
from deeplab_tf.data.custom import CustomSeg
from deeplab_tf.data.info import class_table
from deeplab_tf.data.pipeline import eval_input, train_input
from deeplab_tf.data.validation import DataError
from deeplab_tf.data.voc import PascalVocSeg, SyntheticVoc
