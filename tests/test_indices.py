"""The index types in their own module, still importable from ``textdml.miners.base`` (and ``textdml.miners``)."""

from __future__ import annotations

import torch

import textdml.indices as indices
import textdml.miners
import textdml.miners.base as base


def test_old_import_paths_give_the_same_objects():
    for name in ("PairIndices", "TripletIndices", "TupleIndices", "label_masks", "all_pairs", "all_triplets",
                 "to_pairs", "to_triplets"):
        assert getattr(base, name) is getattr(indices, name), name
    assert textdml.miners.PairIndices is indices.PairIndices


def test_label_masks_exclude_the_diagonal_within_one_set():
    positive, negative = indices.label_masks(torch.tensor([0, 0, 1]))
    assert positive.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert negative.tolist() == [[False, False, True], [False, False, True], [True, True, False]]


def test_pairs_and_triplets_agree():
    labels = torch.tensor([0, 0, 1, 1])
    triplets = indices.all_triplets(labels)
    assert len(triplets) == 4 * 2  # each of 4 positive pairs with 2 negatives
    pairs = indices.to_pairs(triplets, labels, None)
    assert len(pairs.anchor_pos) == 4 and len(pairs.anchor_neg) == 8
