"""Contrastive training of ReT-2 (symmetric InfoNCE, in-batch negatives, ``accelerate``)."""

from .config import DataConfig, ModelInitConfig, TrainingConfig
from .data import PairCollator, PairDataset, TrainingPair, read_m2kr, read_pairs
from .loss import ContrastiveLoss
from .trainer import Trainer, retrieval_recall, train

__all__ = [
    "DataConfig",
    "ModelInitConfig",
    "TrainingConfig",
    "PairCollator",
    "PairDataset",
    "TrainingPair",
    "read_m2kr",
    "read_pairs",
    "ContrastiveLoss",
    "Trainer",
    "retrieval_recall",
    "train",
]
