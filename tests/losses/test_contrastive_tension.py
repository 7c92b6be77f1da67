from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_same_value_and_gradients, precomputed_st_model
from sentence_transformers.sentence_transformer.losses import (
    ContrastiveTensionLoss as STContrastiveTensionLoss,
)
from sentence_transformers.sentence_transformer.losses import (
    ContrastiveTensionLossInBatchNegatives as STInBatch,
)

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.contrastive_tension import ContrastiveTensionLoss
from textdml.miners.base import PairIndices
from textdml.registry import LOSSES


def views(n=6, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype)


def naive_in_batch(t, m, labels, scale=20.0):
    """Each direction: -log of the softmax mass on the sentence's own copies (all rows of its label)."""
    n = len(t)
    s = torch.stack([torch.stack([F.cosine_similarity(t[i], m[j], dim=0) for j in range(n)]) for i in range(n)]) * scale
    same = labels[:, None] == labels[None, :]
    rows = [torch.logsumexp(s[i], 0) - torch.logsumexp(s[i][same[i]], 0) for i in range(n)]
    cols = [torch.logsumexp(s[:, j], 0) - torch.logsumexp(s[:, j][same[:, j]], 0) for j in range(n)]
    return (torch.stack(rows).mean() + torch.stack(cols).mean()) / 2


def naive_binary(t, m):
    total = 0.0
    for i in range(len(t)):
        for j in range(len(m)):
            p = torch.sigmoid(t[i] @ m[j])
            total = total - (torch.log(p) if i == j else torch.log(1 - p))
    return total


def test_registered_and_asks_for_a_twin():
    assert LOSSES.get("contrastive_tension") is ContrastiveTensionLoss and ContrastiveTensionLoss.needs_twin


@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 4, 5], [0, 1, 1, 2, 3, 3]], ids=["distinct", "duplicates"])
def test_in_batch_matches_naive_reference(labels):
    # Distinct sentences take the plain cross-entropy path; a repeated sentence the multi-positive one.
    t, m = views()
    labels = torch.tensor(labels)
    torch.testing.assert_close(ContrastiveTensionLoss()(t, labels, ref_embeddings=m, ref_labels=labels),
                               naive_in_batch(t, m, labels))


def test_binary_matches_naive_reference():
    t, m = views()
    labels = torch.arange(6)
    torch.testing.assert_close(ContrastiveTensionLoss(in_batch_negatives=False)(t, labels, ref_embeddings=m,
                                                                                 ref_labels=labels),
                               naive_binary(t, m))


def test_in_batch_matches_sentence_transformers_forward_and_backward():
    t, m = views(n=16, d=12, seed=1)
    labels = torch.arange(16)
    loss = ContrastiveTensionLoss()
    st = STInBatch(precomputed_st_model("model"))
    st.model1[0].key = "twin"  # ST trains a copy (model1) beside the model; each reads its own view
    assert_same_value_and_gradients(lambda x, y: loss(x, labels, ref_embeddings=y, ref_labels=labels),
                                    lambda x, y: st([{"twin": x, "model": y}], None), t, m)
    torch.testing.assert_close(loss.logit_scale.grad, st.logit_scale.grad)


def test_binary_form_matches_sentence_transformers_on_its_pairs():
    # ST's data loader pairs a sentence with itself (label 1) or with another sentence (label 0).
    t, m = views(n=8, d=12, seed=2)
    pair_labels = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0])
    rows = torch.arange(8)
    pos, neg = rows[pair_labels == 1], rows[pair_labels == 0]
    ours = ContrastiveTensionLoss(in_batch_negatives=False)
    st = STContrastiveTensionLoss(precomputed_st_model("e"))
    assert_same_value_and_gradients(
        lambda x, y: ours(x, rows, ref_embeddings=y, ref_labels=rows, indices=PairIndices(pos, pos, neg, neg)),
        lambda x, y: st([{"e": x}, {"e": y}], pair_labels.float()), t, m)


def test_agreeing_copies_lower_the_loss():
    t, noise = views()
    labels = torch.arange(6)
    values = [ContrastiveTensionLoss()(t, labels, ref_embeddings=t + s * noise, ref_labels=labels).item()
              for s in (2.0, 0.5, 0.1)]
    assert values[0] > values[1] > values[2]


def test_one_sentence_repeated_warns():
    t, m = views(n=3)
    t.requires_grad_()
    labels = torch.zeros(3, dtype=torch.long)
    with pytest.warns(DegenerateBatchWarning):
        value = ContrastiveTensionLoss()(t, labels, ref_embeddings=m, ref_labels=labels)
    value.backward()
    assert value.item() == 0.0 and not torch.isnan(t.grad).any()


def test_bad_inputs():
    with pytest.raises(ValueError, match="pass both"):
        ContrastiveTensionLoss()(torch.randn(4, 8), torch.arange(4))
    with pytest.raises(ValueError, match="scale"):
        ContrastiveTensionLoss(scale=0)
