from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import LABELS, assert_matches_naive_with_gradients, randn
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.n_pairs import NPairsLoss
from textdml.miners.base import PairIndices, all_pairs

REF_LABELS = torch.tensor([0, 1, 1, 2, 4, 5, 5])


def naive_n_pairs(x, labels, ref=None, ref_labels=None, temperature=1.0, l2_reg=0.0):
    """First (anchor, positive) pair of each label; each anchor against every chosen positive and
    every reference row of a label no anchor has."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    anchors, positives = [], []
    for label in sorted(set(labels.tolist())):
        pair = next(
            (
                (a, p)
                for a in range(len(x))
                for p in range(len(ref))
                if labels[a] == label and ref_labels[p] == label and not (same_set and a == p)
            ),
            None,
        )
        if pair is not None:
            anchors.append(x[pair[0]])
            positives.append(ref[pair[1]])
    extra = [ref[j] for j in range(len(ref)) if ref_labels[j] not in labels.tolist()]
    candidates = positives + extra
    losses = []
    for k, anchor in enumerate(anchors):
        logits = torch.stack([anchor @ c for c in candidates]) / temperature
        losses.append(-F.log_softmax(logits, dim=0)[k])
    norms = torch.stack([v @ v for v in anchors + positives])
    return torch.stack(losses).mean() + l2_reg * norms.mean()


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    assert_matches_naive_with_gradients(
        NPairsLoss(temperature=0.5, l2_reg=0.01),
        lambda x, labels, ref, ref_labels: naive_n_pairs(x, labels, ref, ref_labels, 0.5, 0.01),
        use_ref,
    )


def test_hard_negative_layout_is_info_nce_with_dot_product() -> None:
    # Anchors against cat(positives, negatives) with labels=None: every pair is its own class.
    anchors, candidates = randn(4, 6), randn(8, 6, seed=1)
    ours = NPairsLoss(l2_reg=0.0)(anchors, ref_embeddings=candidates)
    expected = InfoNCELoss(temperature=1.0, distance="dot_product")(anchors, ref_embeddings=candidates)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("mined", [False, True])
def test_matches_pml(mined: bool) -> None:
    # PML's DotProductSimilarity normalises by default, and PML has no l2 regulariser inside.
    x = randn(8, 5)
    pairs = all_pairs(LABELS)
    keep = torch.rand(len(pairs.anchor_pos), generator=torch.Generator().manual_seed(3)) < 0.6
    indices = (
        PairIndices(pairs.anchor_pos[keep], pairs.positive[keep], pairs.anchor_neg, pairs.negative) if mined else None
    )
    pml_indices = (
        None if indices is None else (indices.anchor_pos, indices.positive, indices.anchor_neg, indices.negative)
    )
    ours_x, pml_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = NPairsLoss(distance="cosine_similarity", l2_reg=0.0)(ours_x, LABELS, indices=indices)
    theirs = pml_losses.NPairsLoss()(pml_x, LABELS, indices_tuple=pml_indices)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_x.grad, pml_x.grad)
