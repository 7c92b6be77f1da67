from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_same_value_and_gradients, precomputed_st_model
from sentence_transformers.sentence_transformer.losses import MegaBatchMarginLoss as STMegaBatchMarginLoss

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.mega_batch_margin import MegaBatchMarginLoss


def naive_mega_batch(a, labels, ref, ref_labels, same_set, m_pos=0.8, m_neg=0.3):
    terms = []
    for i in range(len(a)):
        pos = [F.cosine_similarity(a[i], ref[j], dim=0) for j in range(len(ref))
               if ref_labels[j] == labels[i] and not (same_set and i == j)]
        neg = [F.cosine_similarity(a[i], ref[j], dim=0) for j in range(len(ref)) if ref_labels[j] != labels[i]]
        if pos and neg:
            terms.append(F.relu(m_pos - min(pos)) + F.relu(max(neg) - m_neg))
    return torch.stack(terms).mean()


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
    st = STMegaBatchMarginLoss(precomputed_st_model("embedding"), positive_margin=0.6, negative_margin=0.2,
                               mini_batch_size=5)
    # The mini-batched form chunks the anchors (backward per chunk); the value is the same.
    assert_same_value_and_gradients(lambda x, y: MegaBatchMarginLoss(0.6, 0.2)(x, ref_embeddings=y),
                                    lambda x, y: st.calculate_loss([[x], [y]], with_backward=mini_batched), a, p)


def test_moving_positives_closer_lowers_the_loss():
    gen = torch.Generator().manual_seed(2)
    a, noise = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    values = [MegaBatchMarginLoss()(a, ref_embeddings=a + s * noise).item() for s in (3.0, 1.0, 0.3)]
    assert values[0] > values[1] > values[2]


def test_one_class_warns_and_keeps_the_graph():
    x = torch.randn(4, 6, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = MegaBatchMarginLoss()(x, torch.zeros(4, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and not torch.isnan(x.grad).any()
