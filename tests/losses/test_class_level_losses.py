"""Contract tests shared by every loss that owns class vectors, and parity with pytorch-metric-learning.

Each loss also has its own file with a naive-loop reference and its specific properties.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from class_level_checks import (
    EMBEDDING_SIZE,
    NUM_CLASSES,
    assert_bfloat16_close_to_float32,
    assert_finite_without_warning,
    assert_gradcheck_embeddings_and_parameters,
    hard_batch,
    labelled_rows,
)
from pytorch_metric_learning import losses as pml

from textdml.losses.base import DegenerateBatchWarning
from textdml.registry import LOSSES

# (registry name, constructor arguments): small settings so that every branch is exercised.
CASES = {
    "center": ("center", {"lambda_c": 0.5}),
    "large_margin_softmax": ("large_margin_softmax", {"margin": 3}),
    "sphere_face": ("sphere_face", {"margin": 2, "scale": 2.0}),
    "cos_face": ("cos_face", {"scale": 16.0}),
    "arc_face": ("arc_face", {"scale": 16.0}),
    "arc_face_sub_centers": ("arc_face", {"scale": 16.0, "sub_centers": 3}),
    "norm_softmax": ("norm_softmax", {"temperature": 0.1}),
    "proxy_nca": ("proxy_nca", {"softmax_scale": 3.0}),
    "proxy_anchor": ("proxy_anchor", {}),
    "soft_triple": ("soft_triple", {"centers_per_class": 3}),
}


def build(case: str, seed: int = 0) -> torch.nn.Module:
    name, kwargs = CASES[case]
    torch.manual_seed(seed)
    loss = LOSSES.build(name, num_classes=NUM_CLASSES, embedding_size=EMBEDDING_SIZE, **kwargs)
    if name == "center":
        # Centres start at the origin; spread them so that every path of the loss is exercised.
        with torch.no_grad():
            loss.centers.normal_()
    return loss


def class_directions(loss: torch.nn.Module) -> torch.Tensor:
    """(C, D): a vector that a row of each class should move toward."""
    if hasattr(loss, "centers"):
        return loss.centers.detach()
    weight = loss.weight.detach()
    return weight.view(NUM_CLASSES, -1, EMBEDDING_SIZE)[:, 0]


@pytest.mark.parametrize("case", CASES)
def test_registry_and_contract_attributes(case):
    name, _ = CASES[case]
    loss = build(case)
    assert type(loss) is LOSSES.get(name)
    assert loss.input_kinds == ("labelled",)
    assert not loss.accepts_indices
    assert loss.citation.startswith("@")


@pytest.mark.parametrize("case", CASES)
def test_moving_rows_toward_their_class_lowers_the_loss(case):
    loss = build(case)
    if case == "center":
        # Make the classifier agree with the centres so that both terms want the same move.
        with torch.no_grad():
            loss.classifier.weight.copy_(loss.centers)
            loss.classifier.bias.zero_()
    embeddings, labels = labelled_rows(dtype=torch.float32)
    targets = class_directions(loss)[labels]
    # Rotate each row halfway toward its class, keeping its norm (L-Softmax and SphereFace use it).
    rotated = torch.nn.functional.normalize(embeddings, dim=1) + torch.nn.functional.normalize(targets, dim=1)
    closer = torch.nn.functional.normalize(rotated, dim=1) * embeddings.norm(dim=1, keepdim=True)
    assert loss(closer, labels) < loss(embeddings, labels)


@pytest.mark.parametrize("case", CASES)
def test_bfloat16_close_to_float32(case):
    assert_bfloat16_close_to_float32(build(case))


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_embeddings_and_parameters(case):
    assert_gradcheck_embeddings_and_parameters(build(case).double())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch", ["one_class", "identical_rows", "zero_rows", "on_class_vector"])
def test_hard_batches_are_finite_without_warning(case, batch):
    # Class vectors always give something to learn: one class or identical rows are no degenerate batch.
    loss = build(case)
    # on_class_vector: each row exactly on its class vector, cosine 1, where acos has an infinite slope.
    assert_finite_without_warning(loss, *hard_batch(batch, on_class=lambda labels: class_directions(loss)[labels]))


@pytest.mark.parametrize("case", CASES)
def test_empty_batch_warns_and_keeps_the_graph(case):
    loss = build(case)
    embeddings = torch.zeros(0, EMBEDDING_SIZE, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning, match="empty"):
        value = loss(embeddings, torch.zeros(0, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0
    assert all(p.grad is not None and (p.grad == 0).all() for p in loss.parameters())


@pytest.mark.parametrize("case", CASES)
def test_state_dict_round_trip(case):
    loss = build(case, seed=0)
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    restored = build(case, seed=1)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    embeddings, labels = labelled_rows(dtype=torch.float32)
    assert restored(embeddings, labels).item() == loss(embeddings, labels).item()


@pytest.mark.parametrize("case", CASES)
def test_parameter_groups_hold_every_parameter_once(case):
    loss = build(case)
    grouped = [p for group in loss.parameter_groups(1e-3) for p in group["params"]]
    assert len(grouped) == len(set(map(id, grouped)))
    assert set(map(id, grouped)) == set(map(id, loss.parameters()))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bad_label", [NUM_CLASSES, -1])
@pytest.mark.parametrize("where", ["labels", "ref_labels"])
def test_label_out_of_range_names_label_and_num_classes(case, bad_label, where):
    loss = build(case)
    embeddings, labels = labelled_rows(dtype=torch.float32)
    ref_labels = labels.clone()
    (labels if where == "labels" else ref_labels)[2] = bad_label
    with pytest.raises(ValueError, match=rf"label {bad_label} .*num_classes={NUM_CLASSES}"):
        loss(embeddings, labels, ref_embeddings=embeddings, ref_labels=ref_labels)


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs_raise_clear_errors(case):
    loss = build(case)
    embeddings, labels = labelled_rows(dtype=torch.float32)
    with pytest.raises(ValueError, match="needs class labels"):
        loss(embeddings, ref_embeddings=embeddings)
    with pytest.raises(ValueError, match="integer class ids"):
        loss(embeddings, labels.float())
    with pytest.raises(ValueError, match=f"embedding_size={EMBEDDING_SIZE}"):
        loss(torch.randn(8, EMBEDDING_SIZE + 1), labels)


# ---- parity with pytorch-metric-learning ------------------------------------------------------
# (our registry name and arguments, PML class and arguments, PML's parameter, stored transposed?)
PML_CASES = {
    "large_margin_softmax_m3": (
        ("large_margin_softmax", {"margin": 3}),
        (pml.LargeMarginSoftmaxLoss, {"margin": 3}),
        "W",
        True,
    ),
    "large_margin_softmax": (("large_margin_softmax", {}), (pml.LargeMarginSoftmaxLoss, {}), "W", True),
    "sphere_face": (("sphere_face", {"scale": 2.0}), (pml.SphereFaceLoss, {"scale": 2.0}), "W", True),
    "cos_face": (("cos_face", {}), (pml.CosFaceLoss, {}), "W", True),
    "arc_face": (("arc_face", {"margin": math.radians(28.6)}), (pml.ArcFaceLoss, {}), "W", True),
    "sub_center_arc_face": (
        ("arc_face", {"margin": math.radians(20.0), "sub_centers": 3}),
        (pml.SubCenterArcFaceLoss, {"margin": 20.0, "sub_centers": 3}),
        "W",
        True,
    ),
    "norm_softmax": (("norm_softmax", {}), (pml.NormalizedSoftmaxLoss, {}), "W", True),
    "proxy_nca": (("proxy_nca", {"softmax_scale": 3.0}), (pml.ProxyNCALoss, {"softmax_scale": 3.0}), "proxies", False),
    "proxy_anchor": (("proxy_anchor", {}), (pml.ProxyAnchorLoss, {}), "proxies", False),
    "proxy_anchor_margin": (
        ("proxy_anchor", {"margin": 0.3, "alpha": 8.0}),
        (pml.ProxyAnchorLoss, {"margin": 0.3, "alpha": 8.0}),
        "proxies",
        False,
    ),
    "soft_triple": (
        ("soft_triple", {"centers_per_class": 3, "tau": 0.0}),
        (pml.SoftTripleLoss, {"centers_per_class": 3}),
        "fc",
        True,
    ),
}


@pytest.mark.parametrize("case", PML_CASES)
@pytest.mark.parametrize("labels_kind", ["every_class", "some_classes"])
def test_matches_pytorch_metric_learning(case, labels_kind):
    (name, kwargs), (pml_class, pml_kwargs), pml_param, transposed = PML_CASES[case]
    ours = LOSSES.build(name, num_classes=NUM_CLASSES, embedding_size=EMBEDDING_SIZE, **kwargs).double()
    theirs = pml_class(num_classes=NUM_CLASSES, embedding_size=EMBEDDING_SIZE, **pml_kwargs).double()
    their_weight = getattr(theirs, pml_param)
    with torch.no_grad():
        ours.weight.copy_(their_weight.T if transposed else their_weight)

    embeddings, labels = labelled_rows(n=10, seed=3)
    if labels_kind == "some_classes":
        labels = labels % 2  # proxies without rows in the batch
    ours_input, their_input = embeddings.clone().requires_grad_(), embeddings.clone().requires_grad_()
    expected = theirs(their_input, labels)
    got = ours(ours_input, labels)
    expected.backward()
    got.backward()

    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ours_input.grad, their_input.grad)
    their_grad = their_weight.grad.T if transposed else their_weight.grad
    torch.testing.assert_close(ours.weight.grad, their_grad)
