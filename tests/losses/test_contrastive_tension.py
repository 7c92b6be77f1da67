from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import (
    ContrastiveTensionLoss as STContrastiveTensionLoss,
)
from sentence_transformers.sentence_transformer.losses import (
    ContrastiveTensionLossInBatchNegatives as STInBatch,
)
from torch import nn

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.contrastive_tension import ContrastiveTensionLoss
from textdml.miners.base import PairIndices
from textdml.registry import LOSSES


class Precomputed(nn.Module):
    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def forward(self, features):
        return {"sentence_embedding": features[self.key]}


def views(n=6, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype)


def naive_in_batch(t, m, scale=20.0):
    n = len(t)
    s = torch.stack([torch.stack([F.cosine_similarity(t[i], m[j], dim=0) for j in range(n)]) for i in range(n)]) * scale
    rows = [torch.logsumexp(s[i], 0) - s[i, i] for i in range(n)]
    cols = [torch.logsumexp(s[:, j], 0) - s[j, j] for j in range(n)]
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


def test_matches_naive_references():
    t, m = views()
    labels = torch.arange(6)
    torch.testing.assert_close(ContrastiveTensionLoss()(t, labels, ref_embeddings=m, ref_labels=labels),
                               naive_in_batch(t, m))
    torch.testing.assert_close(ContrastiveTensionLoss(in_batch_negatives=False)(t, labels, ref_embeddings=m,
                                                                                 ref_labels=labels),
                               naive_binary(t, m))


def test_in_batch_matches_sentence_transformers_forward_and_backward():
    t, m = views(n=16, d=12, seed=1)
    ours_t, ours_m = t.clone().requires_grad_(), m.clone().requires_grad_()
    theirs_t, theirs_m = t.clone().requires_grad_(), m.clone().requires_grad_()
    labels = torch.arange(16)
    loss = ContrastiveTensionLoss()
    ours = loss(ours_t, labels, ref_embeddings=ours_m, ref_labels=labels)
    st = STInBatch.__new__(STInBatch)
    nn.Module.__init__(st)
    st.model1, st.model2 = Precomputed("twin"), Precomputed("model")
    st.similarity_fct = lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    st.cross_entropy_loss, st.logit_scale = nn.CrossEntropyLoss(), nn.Parameter(torch.tensor(20.0).log())
    theirs = st([{"twin": theirs_t, "model": theirs_m}], None)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_t.grad, theirs_t.grad)
    torch.testing.assert_close(ours_m.grad, theirs_m.grad)
    torch.testing.assert_close(loss.logit_scale.grad, st.logit_scale.grad)


def test_binary_form_matches_sentence_transformers_on_its_pairs():
    # ST's data loader pairs a sentence with itself (label 1) or with another sentence (label 0).
    t, m = views(n=8, d=12, seed=2)
    pair_labels = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0])
    rows = torch.arange(8)
    ours_t, ours_m = t.clone().requires_grad_(), m.clone().requires_grad_()
    theirs_t, theirs_m = t.clone().requires_grad_(), m.clone().requires_grad_()
    pos, neg = rows[pair_labels == 1], rows[pair_labels == 0]
    ours = ContrastiveTensionLoss(in_batch_negatives=False)(
        ours_t, rows, ref_embeddings=ours_m, ref_labels=rows, indices=PairIndices(pos, pos, neg, neg))
    st = STContrastiveTensionLoss.__new__(STContrastiveTensionLoss)
    nn.Module.__init__(st)
    st.model1, st.model2, st.criterion = Precomputed("e"), Precomputed("e"), nn.BCEWithLogitsLoss(reduction="sum")
    theirs = st([{"e": theirs_t}, {"e": theirs_m}], pair_labels.float())
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_t.grad, theirs_t.grad)
    torch.testing.assert_close(ours_m.grad, theirs_m.grad)


def test_agreeing_copies_lower_the_loss():
    t, noise = views()
    labels = torch.arange(6)
    values = [ContrastiveTensionLoss()(t, labels, ref_embeddings=t + s * noise, ref_labels=labels).item()
              for s in (2.0, 0.5, 0.1)]
    assert values[0] > values[1] > values[2]


def test_bfloat16_close_to_float32():
    t, m = views(d=16)
    labels = torch.arange(6)
    t16 = t.bfloat16().requires_grad_()
    value = ContrastiveTensionLoss(scale=5.0)(t16, labels, ref_embeddings=m.bfloat16(), ref_labels=labels)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(t16.grad.float()).all()
    torch.testing.assert_close(value, ContrastiveTensionLoss(scale=5.0)(t, labels, ref_embeddings=m, ref_labels=labels),
                               rtol=0.05, atol=0.05)


@pytest.mark.parametrize("in_batch", [True, False])
def test_gradcheck(in_batch):
    t, m = views(n=4, d=3, dtype=torch.float64)
    labels = torch.arange(4)
    loss = ContrastiveTensionLoss(in_batch_negatives=in_batch, scale=2.0, learn_scale=False).double()
    assert torch.autograd.gradcheck(lambda x, y: loss(x, labels, ref_embeddings=y, ref_labels=labels),
                                    (t.requires_grad_(), m.requires_grad_()))


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
