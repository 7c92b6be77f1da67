"""The loss catalogue: one file per loss, one signature for all (see ``losses/base.py``)."""

from textdml.losses.angle import AnglELoss
from textdml.losses.angular import AngularLoss
from textdml.losses.arc_face import ArcFaceLoss
from textdml.losses.base import BaseLoss, DegenerateBatchWarning, reduce_losses
from textdml.losses.cached_gist_embed import CachedGISTEmbedLoss
from textdml.losses.center import CenterLoss
from textdml.losses.circle import CircleLoss
from textdml.losses.clip import ClipLoss
from textdml.losses.contrastive import ContrastiveLoss
from textdml.losses.contrastive_tension import ContrastiveTensionLoss
from textdml.losses.cos_face import CosFaceLoss
from textdml.losses.cosent import CoSENTLoss
from textdml.losses.cross_batch_memory import CrossBatchMemory
from textdml.losses.denoising_auto_encoder import DenoisingAutoEncoderLoss
from textdml.losses.distill_kl_div import DistillKLDivLoss
from textdml.losses.dynamic_soft_margin import DynamicSoftMarginLoss
from textdml.losses.fast_ap import FastAPLoss
from textdml.losses.generalized_lifted_structure import GeneralizedLiftedStructureLoss
from textdml.losses.gist_embed import GISTEmbedLoss
from textdml.losses.histogram import HistogramLoss
from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.instance import InstanceLoss
from textdml.losses.intra_pair_variance import IntraPairVarianceLoss
from textdml.losses.large_margin_softmax import LargeMarginSoftmaxLoss
from textdml.losses.lifted_structure import LiftedStructureLoss
from textdml.losses.manifold import ManifoldLoss
from textdml.losses.margin import MarginLoss
from textdml.losses.margin_mse import MarginMSELoss
from textdml.losses.matryoshka import MatryoshkaLoss
from textdml.losses.mega_batch_margin import MegaBatchMarginLoss
from textdml.losses.mse import MSELoss
from textdml.losses.multi_similarity import MultiSimilarityLoss
from textdml.losses.multiple_losses import MultipleLosses
from textdml.losses.n_pairs import NPairsLoss
from textdml.losses.nca import NCALoss
from textdml.losses.needs import LossNeeds
from textdml.losses.norm_softmax import NormSoftmaxLoss
from textdml.losses.ntxent import NTXentLoss
from textdml.losses.p2s_grad import P2SGradLoss
from textdml.losses.pnp import PNPLoss
from textdml.losses.proxy_anchor import ProxyAnchorLoss
from textdml.losses.proxy_nca import ProxyNCALoss
from textdml.losses.ranked_list import RankedListLoss
from textdml.losses.siglip import SigLipLoss
from textdml.losses.signal_to_noise_ratio_contrastive import SignalToNoiseRatioContrastiveLoss
from textdml.losses.smooth_ap import SmoothAPLoss
from textdml.losses.soft_triple import SoftTripleLoss
from textdml.losses.sparse_info_nce import SparseInfoNCELoss
from textdml.losses.sparse_margin_mse import SparseMarginMSELoss
from textdml.losses.sphere_face import SphereFaceLoss
from textdml.losses.supervised_contrastive import SupervisedContrastiveLoss
from textdml.losses.threshold_consistent_margin import ThresholdConsistentMarginLoss
from textdml.losses.triplet import TripletLoss
from textdml.losses.tuplet_margin import TupletMarginLoss
from textdml.losses.vicreg import VICRegLoss

__all__ = [
    "AngularLoss",
    "ArcFaceLoss",
    "BaseLoss",
    "CenterLoss",
    "CircleLoss",
    "ClipLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "CrossBatchMemory",
    "DegenerateBatchWarning",
    "FastAPLoss",
    "DynamicSoftMarginLoss",
    "GeneralizedLiftedStructureLoss",
    "HistogramLoss",
    "InfoNCELoss",
    "InstanceLoss",
    "IntraPairVarianceLoss",
    "LargeMarginSoftmaxLoss",
    "LiftedStructureLoss",
    "ManifoldLoss",
    "MarginLoss",
    "MultiSimilarityLoss",
    "MultipleLosses",
    "NCALoss",
    "NPairsLoss",
    "NTXentLoss",
    "NormSoftmaxLoss",
    "P2SGradLoss",
    "PNPLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "RankedListLoss",
    "SigLipLoss",
    "SmoothAPLoss",
    "SignalToNoiseRatioContrastiveLoss",
    "SoftTripleLoss",
    "SparseInfoNCELoss",
    "SparseMarginMSELoss",
    "SphereFaceLoss",
    "SupervisedContrastiveLoss",
    "ThresholdConsistentMarginLoss",
    "TripletLoss",
    "TupletMarginLoss",
    "VICRegLoss",
    "AnglELoss",
    "CachedGISTEmbedLoss",
    "ContrastiveTensionLoss",
    "CoSENTLoss",
    "DenoisingAutoEncoderLoss",
    "DistillKLDivLoss",
    "GISTEmbedLoss",
    "MarginMSELoss",
    "MatryoshkaLoss",
    "MegaBatchMarginLoss",
    "MSELoss",
    "reduce_losses",
    "LossNeeds",
]
