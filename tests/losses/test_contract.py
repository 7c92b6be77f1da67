"""The contract every registered loss keeps, parametrized over the loss registry.

Registering a loss puts it under every check here (tests/losses/loss_contract.py says how it is built
and fed); a loss's own test file keeps only its naive reference and its peer parity.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
from loss_contract import (
    DIM,
    LABELS,
    REF_LABELS,
    LossCase,
    all_cases,
    catalogue_names,
    inputs,
    leaves,
    randn,
    spread,
    with_extra,
)

from textdml.losses.base import BaseLoss, DegenerateBatchWarning
from textdml.miners.base import all_pairs, all_triplets
from textdml.registry import LOSSES

CASES = all_cases()
ids = [case.name for case in CASES]
every_loss = pytest.mark.parametrize("case", CASES, ids=ids)
generic_loss = pytest.mark.parametrize(
    "case", [c if c.generic else pytest.param(c, marks=pytest.mark.skip(reason="needs a decoder: see its own tests"))
             for c in CASES], ids=ids)

# Each case under its defaults and under each of its variants (other code paths of the same loss):
# the direction, dtype and gradient checks run under each.
settings_loss = pytest.mark.parametrize(
    "case, settings",
    [pytest.param(c, settings, id=c.name + "".join(f"[{k}={v}]" for k, v in settings.items()),
                  marks=() if c.generic else pytest.mark.skip(reason="needs a decoder: see its own tests"))
     for c in CASES for settings in ({}, *c.variants)])


def grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors, allow_unused=True))


@every_loss
def test_registered_under_its_file_stem(case: LossCase) -> None:
    cls = LOSSES.get(case.name)
    assert issubclass(cls, BaseLoss)
    assert cls.__module__ == f"textdml.losses.{case.name}"


@generic_loss
def test_forward_is_a_finite_scalar_with_gradients(case: LossCase) -> None:
    batch = inputs(case)
    loss = case.build()(**batch)
    assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss)
    gradients = grads(loss, leaves(batch))
    assert all(grad is not None and torch.isfinite(grad).all() for grad in gradients)
    assert any(grad.abs().sum() > 0 for grad in gradients)


@settings_loss
def test_direction_closer_positives_lower_the_loss(case: LossCase, settings: dict) -> None:
    if not case.direction:
        pytest.skip("learns a teacher's geometry or graded scores, not positives against negatives")
    loss_fn = case.build(**{**case.mean_kwargs, **settings})
    near, far = spread(case, loss_fn, 0.3), spread(case, loss_fn, 1.5)
    assert loss_fn(**near) < loss_fn(**far)


@settings_loss
def test_bfloat16_is_computed_in_float32_and_close(case: LossCase, settings: dict) -> None:
    batch = inputs(case)
    loss_fn = case.build(**settings)
    full = loss_fn(**{k: v.detach() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()})
    half_inputs = {k: v.detach().bfloat16() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}
    half = loss_fn(**half_inputs)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    torch.testing.assert_close(half, full, rtol=5e-2, atol=5e-2)


@settings_loss
def test_gradcheck_in_float64(case: LossCase, settings: dict) -> None:
    if not case.gradcheck:
        pytest.skip("stops gradients on purpose; its own test checks the gradient with those frozen")
    loss_fn = case.build(**settings).double()
    batch = inputs(case, dtype=torch.float64, seed=3, n=6)
    tensors = leaves(batch)

    def fn(*values: torch.Tensor) -> torch.Tensor:
        named = dict(batch)
        for key, value in zip([k for k in ("embeddings", "ref_embeddings") if k in batch], values, strict=True):
            named[key] = value
        return loss_fn(**named)

    assert torch.autograd.gradcheck(fn, tuple(tensors), eps=1e-6, atol=1e-5)


def degenerate_labels(kind: str) -> torch.Tensor:
    return torch.zeros(6, dtype=torch.long) if kind == "one_class" else torch.arange(6)


@pytest.mark.parametrize("kind", ["one_class", "no_positive", "one_pair"])
@generic_loss
def test_degenerate_batches_warn_and_never_nan(case: LossCase, kind: str) -> None:
    if case.layout == "scored" or (case.layout == "pairs") != (kind == "one_pair"):
        pytest.skip(f"not a {case.layout} batch")
    if case.class_vectors is not None and kind == "no_positive":
        pytest.skip("class-level loss: rows are compared with class vectors, not with each other")
    if kind == "one_pair":  # one anchor and its positive: no negative to push away
        batch = with_extra(case, {"embeddings": randn(1, DIM).requires_grad_(),
                                  "ref_embeddings": randn(case.ref_rows_per_anchor, DIM, seed=1)})
    else:
        batch = {"embeddings": randn(6, DIM).requires_grad_(), "labels": degenerate_labels(kind)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = case.build()(**batch)
    warned = any(issubclass(w.category, DegenerateBatchWarning) for w in caught)
    assert torch.isfinite(loss)
    (grad,) = grads(loss, [batch["embeddings"]])
    assert grad is None or torch.isfinite(grad).all()
    if kind in case.warns_on:
        assert warned and loss.item() == 0


@generic_loss
def test_identical_embeddings_give_finite_loss_and_gradient(case: LossCase) -> None:
    batch = inputs(case)
    batch = {k: (torch.ones_like(v).requires_grad_() if k in ("embeddings", "ref_embeddings") else v) for k, v in batch.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBatchWarning)
        loss = case.build()(**batch)
    assert torch.isfinite(loss)
    assert all(g is None or torch.isfinite(g).all() for g in grads(loss, leaves(batch)))


@generic_loss
def test_reference_set_reaches_its_gradient(case: LossCase) -> None:
    if not case.takes_ref:
        with pytest.raises(ValueError, match="ref_embeddings"):
            case.build()(**inputs(case), ref_embeddings=randn(4, DIM), ref_labels=REF_LABELS[:4])
        return
    if case.layout != "labelled":
        batch = inputs(case)
    else:
        batch = {**inputs(case), "ref_embeddings": randn(len(REF_LABELS), DIM, seed=5).requires_grad_(),
                 "ref_labels": REF_LABELS}
    loss = case.build()(**batch)
    assert torch.isfinite(loss)
    ref_grad = grads(loss, [batch["ref_embeddings"]])[0]
    assert ref_grad is not None and torch.isfinite(ref_grad).all() and ref_grad.abs().sum() > 0


@generic_loss
def test_reference_of_another_dimension_is_an_error(case: LossCase) -> None:
    if not case.takes_ref:
        pytest.skip("brings its own reference rows")
    batch = {**inputs(case), "ref_embeddings": randn(4, DIM + 1)}
    if case.layout == "labelled":
        batch["ref_labels"] = REF_LABELS[:4]
    with pytest.raises(ValueError, match=r"dim|shape|\("):
        case.build()(**batch)


@generic_loss
def test_mined_tuples_are_taken_or_refused(case: LossCase) -> None:
    if case.layout != "labelled":
        pytest.skip("pairs by position: no labels to mine")
    x = randn(len(LABELS), DIM)
    loss_fn = case.build()
    if not loss_fn.accepts_indices:
        with pytest.raises(ValueError, match="tuples|miner"):
            loss_fn(x, LABELS, indices=all_pairs(LABELS))
        return
    for indices in (all_pairs(LABELS), all_triplets(LABELS)):
        assert torch.isfinite(loss_fn(x, LABELS, indices=indices))


@every_loss
def test_pickle_and_state_dict_round_trip(case: LossCase) -> None:
    torch.manual_seed(0)
    loss_fn = case.build()
    with torch.no_grad():
        for parameter in loss_fn.parameters():
            parameter.add_(0.1)  # away from any default, so a fresh instance would differ
    if not case.generic:  # built without the model part it needs: state round trips only
        restored = pickle.loads(pickle.dumps(loss_fn))
        assert restored.state_dict().keys() == loss_fn.state_dict().keys()
        return
    batch = {k: v.detach() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs(case).items()}
    # Copies first: a stateful loss (a memory) changes with every call.
    by_pickle, by_deepcopy = pickle.loads(pickle.dumps(loss_fn)), copy.deepcopy(loss_fn)
    torch.manual_seed(1)
    by_state_dict = case.build()
    buffer = io.BytesIO()
    torch.save(loss_fn.state_dict(), buffer)  # checkpoints load with weights_only=True: no pickle
    buffer.seek(0)
    by_state_dict.load_state_dict(torch.load(buffer, weights_only=True))
    expected = loss_fn(**batch)
    for restored in (by_pickle, by_deepcopy, by_state_dict):
        torch.testing.assert_close(restored(**batch), expected)


@every_loss
def test_citation_is_bibtex(case: LossCase) -> None:
    citation = LOSSES.get(case.name).citation
    if citation is not None:
        assert citation.strip().startswith("@") and "title" in citation


def test_every_registered_loss_is_under_contract() -> None:
    assert sorted(case.name for case in CASES) == catalogue_names() and len(CASES) >= 50
    assert LABELS.max() < 4 and REF_LABELS.max() < 4  # class-level losses are built for 4 classes
