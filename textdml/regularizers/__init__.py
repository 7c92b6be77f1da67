"""Regularizers: penalties on embeddings or on a loss's class weights, attachable to any loss.

``SomeLoss(..., embedding_regularizer=LpRegularizer(weight=0.01))`` adds a penalty on the batch's
embeddings; ``SomeLoss(..., weight_regularizer=RegularFaceRegularizer(weight=0.1))`` one on the
loss's class vectors (losses with a ``weight`` matrix only). In YAML:
``loss: {name: arc_face, weight_regularizer: {name: regular_face, weight: 0.1}}``.
"""

from textdml.regularizers.attach import attach_regularizers
from textdml.regularizers.base import BaseRegularizer, as_regularizer
from textdml.regularizers.center_invariant import CenterInvariantRegularizer
from textdml.regularizers.flops import FlopsRegularizer
from textdml.regularizers.lp import LpRegularizer
from textdml.regularizers.regular_face import RegularFaceRegularizer
from textdml.regularizers.sparse_centers import SparseCentersRegularizer
from textdml.regularizers.zero_mean import ZeroMeanRegularizer

__all__ = [
    "BaseRegularizer",
    "CenterInvariantRegularizer",
    "FlopsRegularizer",
    "LpRegularizer",
    "RegularFaceRegularizer",
    "SparseCentersRegularizer",
    "ZeroMeanRegularizer",
    "as_regularizer",
    "attach_regularizers",
]
