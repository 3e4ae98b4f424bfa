"""Evaluation as the paper measures it (Section 4): mIoU, whole-image multi-scale inference."""
from deeplab_tf.evaluation.checkpoints import (latest_checkpoint, read_config,
                                               resolve_checkpoint, restore_model)
from deeplab_tf.evaluation.evaluator import (checkpoint_step, evaluate,
                                             examples_from_eval_input, write_results)
from deeplab_tf.evaluation.inference import (make_predict_fn, model_output_stride,
                                             predict_labels, predict_probabilities)
from deeplab_tf.evaluation.metrics import ConfusionMatrix, format_table
