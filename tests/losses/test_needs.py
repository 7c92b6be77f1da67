"""LossNeeds: every loss's needs, and the old flag names read from them (kept for one release)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from loss_contract import DIM, NUM_CLASSES, all_cases

from textdml.losses import (
    BaseLoss,
    CachedGISTEmbedLoss,
    ClipLoss,
    ContrastiveLoss,
    DenoisingAutoEncoderLoss,
    InfoNCELoss,
    LossNeeds,
    MatryoshkaLoss,
    MultipleLosses,
    SigLipLoss,
    TripletLoss,
)
from textdml.losses.needs import FLAG_FIELDS, UNDECLARED, loss_needs
from textdml.registry import LOSSES

# Each flag as BaseLoss declared it before LossNeeds, and each registered loss's own values.
OLD_DEFAULTS = {
    "input_kinds": ("pairs", "triplets", "labelled"), "accepts_indices": False, "gathers": True, "symmetric": False,
    "takes_scores": False, "takes_teacher_scores": False, "teacher_role": None, "needs_twin": False,
    "needs_decoder": False, "tie_encoder_decoder": True, "deletion_ratio": None, "mini_batch_size": None,
    "accepts_embedding_regularizer": True,
}
CLASS_LEVEL = {"input_kinds": ("labelled",), "gathers": False}
OLD_FLAGS = {
    "angle": {"input_kinds": ("scores",), "takes_scores": True},
    "angular": {"accepts_indices": True},
    "arc_face": CLASS_LEVEL,
    "cached_gist_embed": {"input_kinds": ("pairs", "triplets"), "teacher_role": "guide"},
    "center": CLASS_LEVEL,
    "circle": {"accepts_indices": True},
    "clip": {"input_kinds": ("image_text",)},
    "contrastive": {"input_kinds": ("pairs", "triplets", "scored_pairs", "labelled"), "accepts_indices": True},
    "contrastive_tension": {"input_kinds": ("texts",), "accepts_indices": True, "needs_twin": True},
    "cos_face": CLASS_LEVEL,
    "cosent": {"input_kinds": ("scores",), "takes_scores": True},
    "cross_batch_memory": CLASS_LEVEL,
    "denoising_auto_encoder": {"input_kinds": ("texts",), "gathers": False, "needs_decoder": True},
    "distill_kl_div": {"input_kinds": ("triplets",), "gathers": False, "takes_teacher_scores": True,
                       "teacher_role": "teacher"},
    "dynamic_soft_margin": {"accepts_indices": True},
    "fast_ap": {"accepts_indices": True},
    "generalized_lifted_structure": {"accepts_indices": True},
    "gist_embed": {"input_kinds": ("pairs", "triplets"), "teacher_role": "guide"},
    "histogram": {"accepts_indices": True},
    "info_nce": {"input_kinds": ("pairs", "triplets")},
    "instance": {},
    "intra_pair_variance": {"accepts_indices": True},
    "large_margin_softmax": CLASS_LEVEL,
    "lifted_structure": {"accepts_indices": True},
    "manifold": CLASS_LEVEL,
    "margin": {"accepts_indices": True},
    "margin_mse": {"input_kinds": ("triplets",), "gathers": False, "takes_teacher_scores": True,
                   "teacher_role": "teacher"},
    "matryoshka": {},  # a wrapper: its instance takes the wrapped loss's values (below)
    "mega_batch_margin": {},
    "mse": {"gathers": False, "teacher_role": "teacher"},
    "multi_similarity": {"accepts_indices": True},
    "multiple_losses": {"accepts_indices": True},
    "n_pairs": {"accepts_indices": True},
    "nca": {"accepts_indices": True},
    "norm_softmax": CLASS_LEVEL,
    "ntxent": {"accepts_indices": True},
    "p2s_grad": CLASS_LEVEL,
    "pnp": {},
    "proxy_anchor": CLASS_LEVEL,
    "proxy_nca": CLASS_LEVEL,
    "ranked_list": {},
    "siglip": {"input_kinds": ("image_text",)},
    "signal_to_noise_ratio_contrastive": {"accepts_indices": True},
    "smooth_ap": {"accepts_indices": True},
    "soft_triple": CLASS_LEVEL,
    "sphere_face": CLASS_LEVEL,
    "supervised_contrastive": {"accepts_indices": True},
    "threshold_consistent_margin": {"accepts_indices": True},
    "triplet": {"accepts_indices": True},
    "tuplet_margin": {"accepts_indices": True},
    "vicreg": {"input_kinds": ("pairs",), "gathers": False, "accepts_embedding_regularizer": False},
}
CATALOGUE = [name for name in LOSSES.names() if LOSSES.get(name).__module__.startswith("textdml.losses.")]


def test_every_loss_of_the_old_table_is_still_registered() -> None:
    assert set(OLD_FLAGS) <= set(CATALOGUE)  # a loss added since has no old flags to compare with


@pytest.mark.parametrize("name", sorted(OLD_FLAGS))
def test_needs_equal_the_old_flag_values(name: str) -> None:
    cls = LOSSES.get(name)
    for flag, old in {**OLD_DEFAULTS, **OLD_FLAGS[name]}.items():
        if flag == "symmetric" and name == "matryoshka":
            continue  # a property of the instance (the wrapped loss's), as before
        assert getattr(cls.needs, FLAG_FIELDS[flag]) == old, flag


@pytest.mark.parametrize("name", CATALOGUE)
def test_old_flag_names_read_the_needs_on_the_class(name: str) -> None:
    cls = LOSSES.get(name)
    assert isinstance(cls.needs, LossNeeds)
    for flag, field in FLAG_FIELDS.items():
        if flag == "symmetric" and name == "matryoshka":
            continue
        assert getattr(cls, flag) == getattr(cls.needs, field), flag


@pytest.mark.parametrize("case", all_cases(), ids=lambda case: case.name)
def test_an_instance_reads_its_needs_through_the_old_names(case) -> None:
    loss = case.build()
    for flag, field in FLAG_FIELDS.items():
        assert getattr(loss, flag) == getattr(loss.needs, field), flag


@pytest.mark.parametrize(("loss", "flags"), [
    (InfoNCELoss(symmetric=True), {"symmetric": True}),
    (ClipLoss(), {"symmetric": True}),
    (ClipLoss(symmetric=False), {"symmetric": False}),
    (SigLipLoss(gather=True), {"gathers": False}),
    (SigLipLoss(), {"gathers": True}),
    (DenoisingAutoEncoderLoss(deletion_ratio=0.3, tie_encoder_decoder=False),
     {"deletion_ratio": 0.3, "tie_encoder_decoder": False, "needs_decoder": True}),
    (CachedGISTEmbedLoss(mini_batch_size=7), {"mini_batch_size": 7, "teacher_role": "guide"}),
    (MatryoshkaLoss(InfoNCELoss(symmetric=True), [DIM, 4]),
     {"symmetric": True, "input_kinds": ("pairs", "triplets"), "accepts_indices": False}),
    (MatryoshkaLoss(TripletLoss(), [DIM, 4]), {"accepts_indices": True, "symmetric": False}),
    (MultipleLosses([ContrastiveLoss(), InfoNCELoss()]), {"input_kinds": ("pairs", "triplets")}),
], ids=lambda value: type(value).__name__ if isinstance(value, torch.nn.Module) else "")
def test_constructor_arguments_reach_the_instance_needs(loss: BaseLoss, flags: dict) -> None:
    for flag, value in flags.items():
        assert getattr(loss, flag) == value, flag


def test_a_per_instance_need_leaves_the_class_alone() -> None:
    InfoNCELoss(symmetric=True)
    assert not InfoNCELoss.symmetric and not InfoNCELoss.needs.symmetric


def test_pml_adapter_declares_its_needs() -> None:
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    from textdml.losses.pml_adapter import PMLLossAdapter

    tuple_loss = PMLLossAdapter(pml.MultiSimilarityLoss())
    assert tuple_loss.accepts_indices and tuple_loss.gathers and not tuple_loss.symmetric
    class_level = PMLLossAdapter(pml.ArcFaceLoss(num_classes=NUM_CLASSES, embedding_size=DIM))
    assert not class_level.gathers and class_level.input_kinds == ("labelled",)


def test_needs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        InfoNCELoss.needs.symmetric = True  # type: ignore[misc]


def test_a_loss_that_declares_nothing_gets_what_the_run_assumed_before() -> None:
    assert loss_needs(torch.nn.MSELoss()) is UNDECLARED
    assert UNDECLARED.input_kinds == ("pairs", "triplets", "scored_pairs", "labelled") and UNDECLARED.accepts_indices
    assert loss_needs(TripletLoss) is TripletLoss.needs


def test_a_loss_written_with_the_old_class_flags_still_declares_them() -> None:
    with pytest.warns(DeprecationWarning, match="needs = LossNeeds"):
        class OldStyle(BaseLoss):
            gathers = False
            input_kinds = ("labelled",)
            accepts_indices = True

    assert OldStyle.needs == LossNeeds(input_kinds=("labelled",), gathers=False, accepts_indices=True)
    assert not OldStyle.gathers and OldStyle().input_kinds == ("labelled",)


def test_setting_an_old_flag_on_an_instance_warns_and_sets_its_needs() -> None:
    loss = InfoNCELoss()
    with pytest.warns(DeprecationWarning, match="read from needs"):
        loss.symmetric = True
    assert loss.needs.symmetric and not InfoNCELoss.needs.symmetric


def test_the_catalogue_sets_no_old_flag() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for case in all_cases():
            case.build()
