"""Training (paper 4.1 protocol, Appendix B asynchronous replicas): `train(config, workdir)`."""
from deeplab_tf.train.checkpointing import WorkersDisagreeError
from deeplab_tf.train.loop import NonFiniteLossError, Trainer, train
from deeplab_tf.train.run_records import ConfigChangeError
from deeplab_tf.train.strategy import STRATEGIES, make_strategy
