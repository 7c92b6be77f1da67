"""The loss catalogue: one file per loss, one signature for all (see ``losses/base.py``)."""

from textdml.losses.base import BaseLoss, DegenerateBatchWarning, reduce_losses
from textdml.losses.contrastive import ContrastiveLoss
from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.triplet import TripletLoss

__all__ = ["BaseLoss", "ContrastiveLoss", "DegenerateBatchWarning", "InfoNCELoss", "TripletLoss", "reduce_losses"]
