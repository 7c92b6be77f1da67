from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.clip import CLIP_LOGIT_SCALE, ClipLoss
from textdml.losses.info_nce import InfoNCELoss


def naive_clip(images, texts, labels=None, text_labels=None, logit_scale=CLIP_LOGIT_SCALE):
    """Both directions with explicit loops; equal labels are all positives (one numerator)."""
    if labels is None:
        labels, text_labels = torch.arange(len(images)), torch.arange(len(texts))
    scale = math.exp(logit_scale)
    sim = [[scale * F.cosine_similarity(images[i], texts[j], dim=0) for j in range(len(texts))]
           for i in range(len(images))]

    def direction(rows, cols, row_labels, col_labels, value):
        terms = []
        for r in range(rows):
            positives = [c for c in range(cols) if row_labels[r] == col_labels[c]]
            if not positives:
                continue
            numerator = sum(torch.exp(value(r, c)) for c in positives)
            denominator = sum(torch.exp(value(r, c)) for c in range(cols))
            terms.append(-torch.log(numerator / denominator))
        return torch.stack(terms).mean()

    image_to_text = direction(len(images), len(texts), labels, text_labels, lambda r, c: sim[r][c])
    text_to_image = direction(len(texts), len(images), text_labels, labels, lambda r, c: sim[c][r])
    return (image_to_text + text_to_image) / 2


def pairs(n: int, m: int | None = None, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen), torch.randn(m or n, dim, generator=gen)


@pytest.mark.parametrize("extra_texts", [0, 3])
@pytest.mark.parametrize("logit_scale", [math.log(1 / 0.07), 0.5])
def test_matches_naive_reference_by_position(extra_texts, logit_scale):
    images, texts = pairs(5, 5 + extra_texts)
    ours = ClipLoss(logit_scale)(images, ref_embeddings=texts)
    torch.testing.assert_close(ours, naive_clip(images, texts, logit_scale=logit_scale))


def test_duplicate_captions_are_multi_positive():
    # Images 1 and 2 share a caption (label 1): each counts both copies as positives.
    images, texts = pairs(4, 5)
    labels, text_labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 3])
    ours = ClipLoss()(images, labels, ref_embeddings=texts, ref_labels=text_labels)
    torch.testing.assert_close(ours, naive_clip(images, texts, labels, text_labels))


def test_fixed_scale_equals_symmetric_info_nce():
    images, texts = pairs(6)
    clip = ClipLoss(math.log(20.0), max_logit_scale=None)
    info_nce = InfoNCELoss(temperature=1 / 20.0, symmetric=True)
    torch.testing.assert_close(clip(images, ref_embeddings=texts), info_nce(images, ref_embeddings=texts))


def test_moving_captions_closer_lowers_the_loss():
    images, noise = pairs(6)
    loss = ClipLoss()
    values = [loss(images, ref_embeddings=images + scale * noise).item() for scale in (2.0, 1.0, 0.2)]
    assert values[0] > values[1] > values[2]


def test_shared_parameter_is_borrowed_not_owned():
    model_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    loss = ClipLoss(model_scale)
    assert loss.logit_scale is model_scale and list(loss.parameters()) == [] and loss.parameter_groups(1.0) == []
    images, texts = pairs(4)
    loss(images, ref_embeddings=texts).backward()
    assert model_scale.grad is not None and model_scale.grad != 0
    own = ClipLoss(2.0)
    assert [p for group in own.parameter_groups(0.1) for p in group["params"]] == [own.logit_scale]


def test_scale_is_capped():
    images, texts = pairs(4)
    capped = ClipLoss(math.log(1000.0), max_logit_scale=100.0)
    torch.testing.assert_close(capped(images, ref_embeddings=texts), ClipLoss(math.log(100.0))(images, ref_embeddings=texts))


def test_gradcheck():
    images, texts = (t.double().requires_grad_() for t in pairs(4, 5, dim=3))
    loss = ClipLoss(nn.Parameter(torch.tensor(1.2, dtype=torch.float64)))
    labels, text_labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 3])
    assert torch.autograd.gradcheck(
        lambda i, t, s: ClipLoss(s)(i, labels, ref_embeddings=t, ref_labels=text_labels),
        (images, texts, loss.logit_scale),
    )


@pytest.mark.parametrize("labels", [None, [0, 0, 0]], ids=["one_pair", "one_caption"])
def test_degenerate_batches_warn(labels):
    n = 1 if labels is None else 3
    images, texts = (t.requires_grad_() for t in pairs(n))
    loss = ClipLoss(1.0)
    ref_labels = None if labels is None else torch.tensor(labels)
    with pytest.warns(DegenerateBatchWarning):
        value = loss(images, None if labels is None else torch.tensor(labels), ref_embeddings=texts, ref_labels=ref_labels)
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(images.grad).all() and loss.logit_scale.grad is not None


def test_identical_embeddings_are_finite():
    images = torch.ones(4, 3, requires_grad=True)
    value = ClipLoss()(images, ref_embeddings=torch.ones(4, 3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(images.grad).all()


def test_needs_the_text_tower():
    with pytest.raises(ValueError, match="ref_embeddings"):
        ClipLoss()(torch.randn(4, 3), torch.arange(4))


def test_parity_with_open_clip():
    open_clip = pytest.importorskip("open_clip")
    images, texts = pairs(6, dim=8)
    ours_inputs = [images.clone().requires_grad_(), texts.clone().requires_grad_()]
    theirs_inputs = [images.clone().requires_grad_(), texts.clone().requires_grad_()]
    ours_scale, theirs_scale = nn.Parameter(torch.tensor(2.3)), nn.Parameter(torch.tensor(2.3))
    ours = ClipLoss(ours_scale)(ours_inputs[0], ref_embeddings=ours_inputs[1])
    # open_clip takes normalised features and the multiplier itself (its model applies exp).
    image_features, text_features = (F.normalize(x, dim=-1) for x in theirs_inputs)
    theirs = open_clip.ClipLoss()(image_features, text_features, theirs_scale.exp())
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    for mine, reference in zip(ours_inputs + [ours_scale], theirs_inputs + [theirs_scale]):
        torch.testing.assert_close(mine.grad, reference.grad)
