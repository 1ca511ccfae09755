"""Training: the loop (`fit`, `evaluate`), the optimiser as data (`OptimizerConfig`) and the
reconstruction task's loss and metrics."""

from .loop import TrainingDiverged, evaluate, fit
from .optim import OptimizerConfig, build_optimizer

__all__ = ["fit", "evaluate", "TrainingDiverged", "OptimizerConfig", "build_optimizer"]
