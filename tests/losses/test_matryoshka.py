from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import LABELS, precomputed_st_model, randn
from sentence_transformers.sentence_transformer import losses as st_losses

from textdml.distributed import compute_local_loss
from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.matryoshka import MatryoshkaLoss
from textdml.losses.multi_similarity import MultiSimilarityLoss
from textdml.miners.base import all_pairs
from textdml.training.build import build_loss


def naive_matryoshka(inner, x, dims, weights, **kwargs):
    total = 0.0
    for dim, weight in zip(dims, weights, strict=True):
        ref = kwargs.get("ref_embeddings")
        truncated = {**kwargs, "ref_embeddings": None if ref is None else F.normalize(ref[:, :dim], dim=1)}
        total = total + weight * inner(F.normalize(x[:, :dim], dim=1), **truncated)
    return total


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_sum_over_truncations(use_ref: bool) -> None:
    x = randn(8, 6).requires_grad_()
    kwargs = {"labels": LABELS}
    if use_ref:
        kwargs = {"labels": LABELS, "ref_embeddings": randn(7, 6, seed=1), "ref_labels": torch.tensor([0, 1, 1, 2, 3, 3, 4])}
    inner = MultiSimilarityLoss()
    ours = MatryoshkaLoss(inner, dimensions=[2, 6, 4], weights=[0.25, 1.0, 0.5])(x, **kwargs)
    expected = naive_matryoshka(inner, x, [6, 4, 2], [1.0, 0.5, 0.25], **kwargs)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(*(torch.autograd.grad(v, x, retain_graph=True)[0] for v in (ours, expected)))


@pytest.mark.parametrize("num_negatives", [0, 1])
def test_matches_st_matryoshka_over_multiple_negatives_ranking(num_negatives: int) -> None:
    columns = [randn(6, 8, seed=k).float() for k in range(2 + num_negatives)]
    model = precomputed_st_model("embedding", dim=8)
    st_loss = st_losses.MatryoshkaLoss(model, st_losses.MultipleNegativesRankingLoss(model, scale=20.0), [8, 4, 2],
                                       [1.0, 0.5, 0.25])
    st_inputs = [c.clone().requires_grad_() for c in columns]
    theirs = st_loss([{"embedding": c} for c in st_inputs], None)
    anchors, ref = columns[0].clone().requires_grad_(), torch.cat(columns[1:]).clone().requires_grad_()
    ours = MatryoshkaLoss(InfoNCELoss(temperature=0.05), [8, 4, 2], [1.0, 0.5, 0.25])(anchors, ref_embeddings=ref)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(anchors.grad, st_inputs[0].grad)
    torch.testing.assert_close(ref.grad, torch.cat([c.grad for c in st_inputs[1:]]))


def test_mined_tuples_reach_the_wrapped_loss() -> None:
    x, pairs = randn(8, 6), all_pairs(LABELS)
    loss = MatryoshkaLoss(MultiSimilarityLoss(), [6, 3])
    assert loss.accepts_indices
    torch.testing.assert_close(loss(x, LABELS, indices=pairs),
                               naive_matryoshka(MultiSimilarityLoss(), x, [6, 3], [1.0, 1.0], labels=LABELS, indices=pairs))


def test_symmetric_inner_loss_runs_one_way_on_a_copy() -> None:
    inner = InfoNCELoss(symmetric=True)
    loss = MatryoshkaLoss(inner, [6, 3])
    assert loss.symmetric
    one_way = __import__("copy").copy(loss)
    one_way.symmetric = False
    assert not one_way.symmetric and loss.symmetric and inner.symmetric
    x, ref = randn(4, 6), randn(4, 6, seed=1)
    torch.testing.assert_close(compute_local_loss(loss, x, ref_embeddings=ref), loss(x, ref_embeddings=ref))


def test_built_from_config_with_the_model_size() -> None:
    loss = build_loss({"name": "matryoshka", "loss": {"name": "info_nce", "temperature": 0.05},
                       "dimensions": [32, 16, 8]}, embedding_size=32)
    assert isinstance(loss.loss, InfoNCELoss) and loss.dimensions == [32, 16, 8] and loss.weights == [1.0] * 3
    assert "kusupati" in loss.citation and loss.input_kinds == InfoNCELoss.input_kinds


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"dimensions": []}, "positive"), ({"dimensions": [4, -1]}, "positive"),
     ({"dimensions": [4, 2], "weights": [1.0]}, "2 dimensions but 1 weights"),
     ({"dimensions": [64], "embedding_size": 32}, "exceeds the model's embedding size 32")],
)
def test_bad_settings_are_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MatryoshkaLoss(InfoNCELoss(), **kwargs)


def test_dimension_above_the_embeddings_is_an_error() -> None:
    with pytest.raises(ValueError, match="exceeds the embedding size 6"):
        MatryoshkaLoss(InfoNCELoss(), [8])(randn(4, 6), ref_embeddings=randn(4, 6))
