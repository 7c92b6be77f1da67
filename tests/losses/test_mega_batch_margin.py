from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MegaBatchMarginLoss as STMegaBatchMarginLoss

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.mega_batch_margin import MegaBatchMarginLoss
from textdml.registry import LOSSES


def naive_mega_batch(a, labels, ref, ref_labels, same_set, m_pos=0.8, m_neg=0.3):
    terms = []
    for i in range(len(a)):
        pos = [F.cosine_similarity(a[i], ref[j], dim=0) for j in range(len(ref))
               if ref_labels[j] == labels[i] and not (same_set and i == j)]
        neg = [F.cosine_similarity(a[i], ref[j], dim=0) for j in range(len(ref)) if ref_labels[j] != labels[i]]
        if pos and neg:
            terms.append(F.relu(m_pos - min(pos)) + F.relu(max(neg) - m_neg))
    return torch.stack(terms).mean()


def test_registered():
    assert LOSSES.get("mega_batch_margin") is MegaBatchMarginLoss


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref):
    gen = torch.Generator().manual_seed(0)
    x, labels = torch.randn(10, 6, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    ref, ref_labels = (torch.randn(7, 6, generator=gen), torch.randint(0, 3, (7,), generator=gen)) if use_ref else (x, labels)
    ours = MegaBatchMarginLoss()(x, labels, ref_embeddings=ref if use_ref else None,
                                 ref_labels=ref_labels if use_ref else None)
    torch.testing.assert_close(ours, naive_mega_batch(x, labels, ref, ref_labels, not use_ref))


@pytest.mark.parametrize("mini_batched", [False, True])
def test_matches_sentence_transformers_forward_and_backward(mini_batched):
    gen = torch.Generator().manual_seed(1)
    a, p = torch.randn(12, 8, generator=gen), torch.randn(12, 8, generator=gen)
    ours_a, ours_p = a.clone().requires_grad_(), p.clone().requires_grad_()
    theirs_a, theirs_p = a.clone().requires_grad_(), p.clone().requires_grad_()
    ours = MegaBatchMarginLoss(0.6, 0.2)(ours_a, ref_embeddings=ours_p)
    st = STMegaBatchMarginLoss.__new__(STMegaBatchMarginLoss)
    torch.nn.Module.__init__(st)
    st.positive_margin, st.negative_margin, st.mini_batch_size = 0.6, 0.2, 5
    # The mini-batched form chunks the anchors (backward per chunk); the value is the same.
    theirs = st.calculate_loss([[theirs_a], [theirs_p]], with_backward=mini_batched)
    ours.backward()
    if not mini_batched:
        theirs.backward()
    torch.testing.assert_close(ours.detach(), theirs.detach())
    torch.testing.assert_close(ours_a.grad, theirs_a.grad)
    torch.testing.assert_close(ours_p.grad, theirs_p.grad)


def test_moving_positives_closer_lowers_the_loss():
    gen = torch.Generator().manual_seed(2)
    a, noise = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    values = [MegaBatchMarginLoss()(a, ref_embeddings=a + s * noise).item() for s in (3.0, 1.0, 0.3)]
    assert values[0] > values[1] > values[2]


def test_bfloat16_close_to_float32():
    gen = torch.Generator().manual_seed(3)
    a, p = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    a16 = a.bfloat16().requires_grad_()
    value = MegaBatchMarginLoss()(a16, ref_embeddings=p.bfloat16())
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(a16.grad.float()).all()
    torch.testing.assert_close(value, MegaBatchMarginLoss()(a, ref_embeddings=p), rtol=0.05, atol=0.05)


def test_gradcheck():
    gen = torch.Generator().manual_seed(4)
    a, p = torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randn(4, 3, generator=gen, dtype=torch.float64)
    loss = MegaBatchMarginLoss(0.99, -0.99)  # margins that keep every hinge active (smooth there)
    assert torch.autograd.gradcheck(lambda x, y: loss(x, ref_embeddings=y), (a.requires_grad_(), p.requires_grad_()))


def test_one_class_warns_and_keeps_the_graph():
    x = torch.randn(4, 6, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = MegaBatchMarginLoss()(x, torch.zeros(4, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and not torch.isnan(x.grad).any()
