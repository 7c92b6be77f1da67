from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_same_value_and_gradients, precomputed_st_model, word_level_tokenizer
from sentence_transformers.base.losses.merged_forward import column_merging_disabled
from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss as STGISTEmbedLoss

from textdml.losses.cached_gist_embed import CachedGISTEmbedLoss
from textdml.losses.gist_embed import GISTEmbedLoss
from textdml.registry import LOSSES


def batch(n=6, d=8, gd=5, negatives=True, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    rows = n * (2 if negatives else 1)
    return (torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(rows, d, generator=gen, dtype=dtype),
            torch.randn(n, gd, generator=gen, dtype=dtype), torch.randn(rows, gd, generator=gen, dtype=dtype))


def naive_gist(a, ref, ga, gref, temperature=0.01, margin=0.0, contrast_anchors=True, contrast_positives=True):
    """One anchor at a time: gather the kept candidates, then -log softmax of the own positive."""
    n = len(a)
    cos = lambda x, y: F.cosine_similarity(x, y, dim=0)  # noqa: E731
    losses = []
    for i in range(n):
        threshold = cos(ga[i], gref[i]) - margin
        logits = [cos(a[i], ref[i])]
        for j in range(len(ref)):
            if j != i and cos(ga[i], gref[j]) <= threshold:
                logits.append(cos(a[i], ref[j]))
        if contrast_anchors:
            logits += [cos(a[i], a[k]) for k in range(n) if k != i and cos(ga[i], ga[k]) <= threshold]
        if contrast_positives:
            logits += [cos(ref[i], ref[k]) for k in range(n) if k != i and cos(gref[i], gref[k]) <= threshold]
        logits = torch.stack(logits) / temperature
        losses.append(torch.logsumexp(logits, 0) - logits[0])
    return torch.stack(losses).mean()


def st_gist(a, ref, ga, gref, **kwargs):
    tokenizer = word_level_tokenizer()  # one vocabulary for both: ST compares them to decide on re-tokenising
    loss = STGISTEmbedLoss(precomputed_st_model("emb", tokenizer=tokenizer),
                           precomputed_st_model("guide", tokenizer=tokenizer),
                           temperature=kwargs.get("temperature", 0.01),
                           margin_strategy=kwargs.get("margin_strategy", "absolute"), margin=kwargs.get("margin", 0.0),
                           contrast_anchors=kwargs.get("contrast_anchors", True),
                           contrast_positives=kwargs.get("contrast_positives", True))
    n = len(a)
    columns = [(a, ga), *zip(ref.split(n), gref.split(n), strict=True)]
    with column_merging_disabled():
        return loss([{"emb": e, "guide": g} for e, g in columns], None)


def test_registered_and_named_by_its_guide():
    assert LOSSES.get("gist_embed") is GISTEmbedLoss and LOSSES.get("cached_gist_embed") is CachedGISTEmbedLoss
    assert GISTEmbedLoss.teacher_role == "guide" and GISTEmbedLoss(guide="big/model").guide == "big/model"


@pytest.mark.parametrize("negatives", [False, True])
@pytest.mark.parametrize("options", [{}, {"margin": 0.1}, {"contrast_anchors": False, "contrast_positives": False}])
def test_matches_naive_reference(negatives, options):
    a, ref, ga, gref = batch(negatives=negatives)
    ours = GISTEmbedLoss(temperature=0.05, **options)(a, ref_embeddings=ref, teacher_embeddings=ga,
                                                        teacher_ref_embeddings=gref)
    torch.testing.assert_close(ours, naive_gist(a, ref, ga, gref, temperature=0.05, **options))


@pytest.mark.parametrize("options", [{}, {"margin_strategy": "relative", "margin": 0.2},
                                     {"contrast_positives": False}])
@pytest.mark.parametrize("negatives", [False, True])
def test_matches_sentence_transformers_forward_and_backward(options, negatives):
    a, ref, ga, gref = batch(n=16, d=12, negatives=negatives, seed=1)
    assert_same_value_and_gradients(
        lambda x, y: GISTEmbedLoss(temperature=0.05, **options)(x, ref_embeddings=y, teacher_embeddings=ga,
                                                                teacher_ref_embeddings=gref),
        lambda x, y: st_gist(x, y, ga, gref, temperature=0.05, **options), a, ref)


def test_the_guide_removes_false_negatives():
    # For the guide, ref row 1 is as close to anchor 0 as anchor 0's own positive: a false negative.
    a, ref, ga, gref = batch(negatives=False)
    ga[0] = gref[0]  # the guide is sure of the positive (similarity 1) ...
    gref[1] = gref[0]  # ... and of row 1 just as much
    loss = GISTEmbedLoss(temperature=0.05, margin=0.05, contrast_anchors=False, contrast_positives=False)

    def anchor_0(ref_rows):  # anchor 0's own term
        return loss(a[:1], ref_embeddings=ref_rows, teacher_embeddings=ga[:1], teacher_ref_embeddings=gref,
                    num_positives=len(ref_rows)).item()

    pulled = ref.clone()
    pulled[1] = a[0] * 5  # onto anchor 0: a strong negative, if it counted
    assert anchor_0(pulled) == pytest.approx(anchor_0(ref), abs=1e-6)
    pulled[2] = a[0] * 5  # row 2 is a real negative for the guide: it counts
    assert anchor_0(pulled) > anchor_0(ref) + 1


def test_equal_labels_are_positives_not_negatives():
    a, ref, ga, gref = batch(negatives=False)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])  # anchors 0 and 5 share their positive text
    ours = GISTEmbedLoss(contrast_anchors=False, contrast_positives=False)(
        a, labels, ref_embeddings=ref, ref_labels=labels, teacher_embeddings=ga, teacher_ref_embeddings=gref)
    assert torch.isfinite(ours)


def test_moving_positives_closer_lowers_the_loss():
    a, _, ga, _ = batch(negatives=False)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(a.shape, generator=gen)
    values = [GISTEmbedLoss(temperature=0.1)(a, ref_embeddings=a + s * noise, teacher_embeddings=ga,
                                             teacher_ref_embeddings=ga + s * noise[:, :5]).item() for s in (2.0, 1.0, 0.2)]
    assert values[0] > values[1] > values[2]


def test_bad_inputs():
    a, ref, ga, gref = batch()
    with pytest.raises(ValueError, match="loss.guide="):
        GISTEmbedLoss()(a, ref_embeddings=ref)
    with pytest.raises(ValueError, match="do not fit"):
        GISTEmbedLoss()(a, ref_embeddings=ref, teacher_embeddings=ga, teacher_ref_embeddings=gref, positive_offset=3)
    with pytest.raises(ValueError, match="margin_strategy"):
        GISTEmbedLoss(margin_strategy="soft")
    with pytest.raises(ValueError, match="mini_batch_size"):
        CachedGISTEmbedLoss(mini_batch_size=0)
