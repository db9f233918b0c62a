from benchmark.training.losses import num_outputs, per_example_loss, predict
from benchmark.training.trainer import Checkpoint, TrainConfig, TrainingRun, predict_logits, train

__all__ = [
    "Checkpoint",
    "TrainConfig",
    "TrainingRun",
    "num_outputs",
    "per_example_loss",
    "predict",
    "predict_logits",
    "train",
]
