from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import LABELS, REF_LABELS, randn
from pytorch_metric_learning import losses as pml_losses
from torch.func import functional_call

from textdml.losses.margin import MarginLoss
from textdml.miners.base import PairIndices, all_pairs
from textdml.registry import LOSSES


def mined_pairs(labels: torch.Tensor, ref_labels: torch.Tensor | None = None, seed: int = 0) -> PairIndices:
    """A random subset of all pairs that keeps one positive and one negative for every anchor."""
    pairs = all_pairs(labels, ref_labels)
    generator = torch.Generator().manual_seed(seed)

    def keep(anchor: torch.Tensor) -> torch.Tensor:
        keep = torch.rand(len(anchor), generator=generator) < 0.5
        first_of_anchor = torch.ones_like(keep)
        first_of_anchor[1:] = anchor[1:] != anchor[:-1]
        return keep | first_of_anchor

    pos, neg = keep(pairs.anchor_pos), keep(pairs.anchor_neg)
    return PairIndices(pairs.anchor_pos[pos], pairs.positive[pos], pairs.anchor_neg[neg], pairs.negative[neg])


def as_pml(pairs: PairIndices) -> tuple[torch.Tensor, ...]:
    return pairs.anchor_pos, pairs.positive, pairs.anchor_neg, pairs.negative


def naive_margin(
    x, labels, ref=None, ref_labels=None, margin=0.2, beta=None, nu=0.0, per_class=False, learn_beta=False
):
    """Loops over every (anchor, positive, negative) triplet; euclidean on normalised rows."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    dist = lambda u, v: (F.normalize(u, dim=0) - F.normalize(v, dim=0)).norm()  # noqa: E731
    terms, betas = [], []
    for a in range(len(x)):
        for p in range(len(ref)):
            if ref_labels[p] != labels[a] or (same_set and p == a):
                continue
            for n in range(len(ref)):
                if ref_labels[n] == labels[a]:
                    continue
                b = beta[labels[a]] if per_class else beta[0]
                terms += [torch.relu(dist(x[a], ref[p]) - b + margin), torch.relu(b - dist(x[a], ref[n]) + margin)]
                betas.append(b)
    terms = torch.stack(terms)
    active = int((terms > 0).sum())
    loss = terms.sum() / max(active, 1)
    if learn_beta:
        loss = loss + (nu * beta[0] if not per_class else (nu * torch.stack(betas).sum() / active if active else 0))
    return loss


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("per_class", [False, True])
def test_matches_naive_reference(use_ref: bool, per_class: bool) -> None:
    x = randn(8, 5).requires_grad_()
    ref = randn(7, 5, seed=1).requires_grad_() if use_ref else None
    loss_fn = MarginLoss(margin=0.3, nu=0.1, learn_beta=True, num_classes=5 if per_class else None).double()
    with torch.no_grad():
        loss_fn.beta.copy_(0.8 + 0.4 * torch.rand(len(loss_fn.beta), generator=torch.Generator().manual_seed(2)))
    kwargs = dict(ref_embeddings=ref, ref_labels=REF_LABELS) if use_ref else {}
    ours = loss_fn(x, LABELS, **kwargs)
    beta = loss_fn.beta.detach().clone().requires_grad_()
    expected = naive_margin(
        x, LABELS, ref, REF_LABELS if use_ref else None, 0.3, beta, 0.1, per_class=per_class, learn_beta=True
    )
    torch.testing.assert_close(ours, expected)
    ours_grads = torch.autograd.grad(ours, [x, loss_fn.beta])
    expected_grads = torch.autograd.grad(expected, [x, beta])
    for got, want in zip(ours_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_gradcheck_embeddings_and_beta() -> None:
    x = randn(6, 4).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss_fn = MarginLoss(nu=0.1, learn_beta=True, num_classes=3).double()
    beta = torch.tensor([0.9, 1.0, 1.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e, b: functional_call(loss_fn, {"beta": b}, (e, labels)), (x, beta))


def test_labels_outside_num_classes_are_an_error() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        MarginLoss(num_classes=2)(randn(4, 3), torch.tensor([0, 0, 2, 2]))


def test_beta_is_a_parameter_only_when_learnt() -> None:
    assert LOSSES.get("margin") is MarginLoss
    assert MarginLoss().parameter_groups(lr=0.01) == []
    learnt = MarginLoss(learn_beta=True, num_classes=4)
    (group,) = learnt.parameter_groups(lr=0.01)
    assert group["params"] == [learnt.beta] and learnt.beta.shape == (4,)


@pytest.mark.parametrize("case", ["same_set", "ref", "mined", "per_class_beta"])
def test_matches_pml(case: str) -> None:
    # PML normalises inside its distance like ours; its reducer divides by the active pair terms.
    x = randn(8, 5)
    ref = randn(7, 5, seed=1) if case == "ref" else None
    per_class = case == "per_class_beta"
    ours_fn = MarginLoss(margin=0.2, nu=0.1, learn_beta=True, num_classes=4 if per_class else None).double()
    pml_fn = pml_losses.MarginLoss(margin=0.2, nu=0.1, learn_beta=True, num_classes=4 if per_class else None).double()
    with torch.no_grad():
        pml_fn.beta.copy_(torch.linspace(0.9, 1.3, len(pml_fn.beta)))
        ours_fn.beta.copy_(pml_fn.beta)
    mined = mined_pairs(LABELS) if case == "mined" else None
    ours_x, pml_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    if ref is None:
        ours = ours_fn(ours_x, LABELS, indices=mined)
        theirs = pml_fn(pml_x, LABELS, indices_tuple=None if mined is None else as_pml(mined))
    else:
        ours = ours_fn(ours_x, LABELS, ref_embeddings=ref, ref_labels=REF_LABELS)
        theirs = pml_fn(pml_x, LABELS, ref_emb=ref, ref_labels=REF_LABELS)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_x.grad, pml_x.grad)
    torch.testing.assert_close(ours_fn.beta.grad, pml_fn.beta.grad)
