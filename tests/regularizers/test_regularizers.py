"""Each regularizer against a naive loop and pytorch-metric-learning; attaching them to losses."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import regularizers as pml_regularizers

from textdml.config import ConfigError, load_run_config
from textdml.losses import (
    ArcFaceLoss,
    ContrastiveLoss,
    MultipleLosses,
    ProxyAnchorLoss,
    SignalToNoiseRatioContrastiveLoss,
    SoftTripleLoss,
    VICRegLoss,
)
from textdml.registry import REGULARIZERS
from textdml.regularizers import (
    CenterInvariantRegularizer,
    LpRegularizer,
    RegularFaceRegularizer,
    SparseCentersRegularizer,
    ZeroMeanRegularizer,
)
from textdml.training.build import build_loss


def rows(n=6, dim=4, seed=0, dtype=torch.float64):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def naive_cosine(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


NAIVE = {
    "lp": lambda x: sum(sum(abs(float(v)) ** 3 for v in row) ** (1 / 3) for row in x) / len(x),
    "lp_squared": lambda x: sum(sum(float(v) ** 2 for v in row) for row in x) / len(x),
    "zero_mean": lambda x: sum(abs(sum(float(v) for v in row)) for row in x) / len(x),
    "regular_face": lambda x: sum(max(naive_cosine(x[i], x[j]) for j in range(len(x)) if j != i)
                                  for i in range(len(x))) / len(x),
    "center_invariant": lambda x: sum(
        (float(row @ row) - sum(float(r @ r) for r in x) / len(x)) ** 2 / 4 for row in x) / len(x),
    "sparse_centers": lambda x: sum(
        math.sqrt(max(2 - 2 * naive_cosine(x[c * 3 + t], x[c * 3 + s]), 0.0))
        for c in range(2) for t in range(3) for s in range(t + 1, 3)) / (2 * 3 * 2),
}
OURS = {
    "lp": lambda: LpRegularizer(p=3.0),
    "lp_squared": lambda: LpRegularizer(p=2.0, power=2.0),
    "zero_mean": ZeroMeanRegularizer,
    "regular_face": RegularFaceRegularizer,
    "center_invariant": CenterInvariantRegularizer,
    "sparse_centers": lambda: SparseCentersRegularizer(num_classes=2, centers_per_class=3),
}
PML = {
    "lp": lambda: pml_regularizers.LpRegularizer(p=3),
    "lp_squared": lambda: pml_regularizers.LpRegularizer(p=2, power=2),
    "zero_mean": pml_regularizers.ZeroMeanRegularizer,
    "regular_face": pml_regularizers.RegularFaceRegularizer,
    "center_invariant": pml_regularizers.CenterInvariantRegularizer,
    "sparse_centers": lambda: pml_regularizers.SparseCentersRegularizer(num_classes=2, centers_per_class=3),
}
NAMES = list(OURS)


@pytest.mark.parametrize("name", NAMES)
def test_matches_naive_loop(name):
    x = rows()
    assert math.isclose(OURS[name]()(x).item(), NAIVE[name](x), rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_weight_scales_the_term(name):
    x = rows()
    regularizer = OURS[name]()
    regularizer.weight = 0.25
    torch.testing.assert_close(regularizer(x), 0.25 * OURS[name]()(x))


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_pml_forward_and_backward(name):
    x = rows(dtype=torch.float32).requires_grad_()
    value = OURS[name]()(x)
    (grad,) = torch.autograd.grad(value, x)
    expected = PML[name]()(x)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    x = rows().requires_grad_()
    assert torch.autograd.gradcheck(OURS[name](), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_close_to_float32(name):
    x = rows(dtype=torch.float32)
    x16 = x.bfloat16().requires_grad_()
    value16 = OURS[name]()(x16)
    value16.backward()
    assert value16.dtype == torch.float32 and torch.isfinite(x16.grad.float()).all()
    torch.testing.assert_close(value16, OURS[name]()(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name", NAMES)
def test_zero_and_repeated_rows_are_finite(name):
    for x in (torch.zeros(6, 4), torch.ones(6, 4)):
        x.requires_grad_()
        value = OURS[name]()(x)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_one_row_has_no_neighbour():
    x = rows(n=1).requires_grad_()
    value = RegularFaceRegularizer()(x)
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_registered_with_citations():
    assert REGULARIZERS.names() == sorted(["center_invariant", "flops", "lp", "regular_face", "sparse_centers",
                                          "zero_mean"])
    for name in REGULARIZERS.names():
        assert REGULARIZERS.get(name).citation.startswith("@")


# Attached to losses -----------------------------------------------------------------------------

def labelled(n=12, dim=8, classes=4, seed=1):
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    return x, torch.arange(n) % classes


def test_embedding_regularizer_adds_its_term_to_any_loss():
    x, labels = labelled()
    plain = ContrastiveLoss()(x, labels)
    value = ContrastiveLoss(embedding_regularizer=LpRegularizer(weight=0.1))(x, labels)
    torch.testing.assert_close(value, plain + 0.1 * x.norm(dim=1).mean())
    # A loss that overrides forward (a wrapper) gets it too.
    wrapped = MultipleLosses([ContrastiveLoss()], embedding_regularizer=ZeroMeanRegularizer())
    torch.testing.assert_close(wrapped(x, labels), plain + x.sum(dim=1).abs().mean())


def test_weight_regularizer_adds_its_term():
    x, labels = labelled()
    loss = ArcFaceLoss(4, 8)
    with_reg = copy.deepcopy(loss)
    from textdml.regularizers import attach_regularizers

    attach_regularizers(with_reg, weight_regularizer=RegularFaceRegularizer(weight=0.5))
    torch.testing.assert_close(with_reg(x, labels), loss(x, labels) + 0.5 * RegularFaceRegularizer()(loss.weight))


def test_regularizer_still_applies_on_a_degenerate_batch():
    x = torch.randn(1, 4, requires_grad=True)
    with pytest.warns(UserWarning):
        value = ContrastiveLoss(embedding_regularizer="lp")(x, torch.tensor([0]))
    value.backward()
    torch.testing.assert_close(value, x.norm(dim=1).mean())
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("case", ["arc_face+regular_face", "proxy_anchor+center_invariant", "soft_triple+sparse_centers",
                                  "contrastive+lp", "snr+zero_mean"])
def test_parity_with_pml_losses(case):
    x, labels = labelled()
    if case == "arc_face+regular_face":
        theirs = pml_losses.ArcFaceLoss(4, 8, weight_regularizer=pml_regularizers.RegularFaceRegularizer(),
                                        weight_reg_weight=0.3)
        ours = ArcFaceLoss(4, 8, margin=math.radians(28.6),
                           weight_regularizer=RegularFaceRegularizer(weight=0.3))
        ours.weight.data.copy_(theirs.W.data.T)
    elif case == "proxy_anchor+center_invariant":
        theirs = pml_losses.ProxyAnchorLoss(4, 8, weight_regularizer=pml_regularizers.CenterInvariantRegularizer())
        ours = ProxyAnchorLoss(4, 8, weight_regularizer="center_invariant")
        ours.weight.data.copy_(theirs.proxies.data)
    elif case == "soft_triple+sparse_centers":
        theirs = pml_losses.SoftTripleLoss(4, 8, weight_regularizer=pml_regularizers.SparseCentersRegularizer(4, 10),
                                           weight_reg_weight=0.2)
        ours = SoftTripleLoss(4, 8, tau=0.0, weight_regularizer={"name": "sparse_centers", "weight": 0.2})
        ours.weight.data.copy_(theirs.fc.data.T)
    elif case == "contrastive+lp":
        theirs = pml_losses.ContrastiveLoss(embedding_regularizer=pml_regularizers.LpRegularizer(),
                                            embedding_reg_weight=0.1)
        ours = ContrastiveLoss(margin=1.0, distance="lp", power=1, reduction="mean_nonzero",
                               embedding_regularizer=LpRegularizer(weight=0.1))
    else:
        theirs = pml_losses.SignalToNoiseRatioContrastiveLoss(
            embedding_regularizer=pml_regularizers.ZeroMeanRegularizer(), embedding_reg_weight=0.001)
        ours = SignalToNoiseRatioContrastiveLoss(embedding_regularizer=ZeroMeanRegularizer(weight=0.001))
    value = ours(x, labels)
    own = [p for p in ours.parameters()]
    grads = torch.autograd.grad(value, [x, *own])
    expected = theirs(x, labels)
    expected_grads = torch.autograd.grad(expected, [x, *theirs.parameters()])
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grads[0], expected_grads[0])
    if own:
        their_weight_grad = expected_grads[1]
        torch.testing.assert_close(grads[1], their_weight_grad if case == "proxy_anchor+center_invariant"
                                   else their_weight_grad.T)


def test_weight_regularizer_on_a_loss_without_weights_names_what_applies():
    with pytest.raises(ValueError, match="ContrastiveLoss has no class weights") as err:
        ContrastiveLoss(weight_regularizer=RegularFaceRegularizer())
    message = str(err.value)
    assert "embedding_regularizer" in message and "center_invariant, lp, regular_face, zero_mean" in message
    assert "arc_face" in message


def test_regularizers_that_do_not_apply_are_errors():
    with pytest.raises(ValueError, match="class weights only"):
        ContrastiveLoss(embedding_regularizer="sparse_centers")
    with pytest.raises(ValueError, match="takes no embedding_regularizer"):
        VICRegLoss(embedding_regularizer="lp")
    with pytest.raises(ValueError, match="unknown regularizer 'regularface': did you mean 'regular_face'"):
        ArcFaceLoss(4, 8, weight_regularizer="regularface")
    with pytest.raises(ValueError, match="centers_per_class must be > 1"):
        ArcFaceLoss(4, 8, weight_regularizer="sparse_centers")  # one centre per class
    with pytest.raises(ValueError, match="reduction='none'"):
        ContrastiveLoss(reduction="none", embedding_regularizer="lp")(*labelled())


def test_state_dict_pickle_and_deepcopy_keep_the_regularizer():
    x, labels = labelled()
    loss = SoftTripleLoss(4, 8, centers_per_class=3, weight_regularizer=SparseCentersRegularizer(weight=0.2),
                          embedding_regularizer=LpRegularizer(weight=0.1))
    expected = loss(x, labels)
    for clone in (copy.deepcopy(loss), pickle.loads(pickle.dumps(loss))):
        torch.testing.assert_close(clone(x, labels), expected)
    fresh = SoftTripleLoss(4, 8, centers_per_class=3, weight_regularizer=SparseCentersRegularizer(weight=0.2),
                           embedding_regularizer=LpRegularizer(weight=0.1))
    fresh.load_state_dict(loss.state_dict())
    torch.testing.assert_close(fresh(x, labels), expected)


def test_from_yaml(tmp_path):
    recipe = tmp_path / "run.yaml"
    recipe.write_text("train: {path: data.jsonl}\n"
                      "loss: {name: arc_face, weight_regularizer: {name: regular_face, weight: 0.1},\n"
                      "       embedding_regularizer: {name: lp, power: 2, weight: 0.01}}\n")
    config = load_run_config(recipe)
    loss = build_loss(config.loss, embedding_size=8, num_classes=4)
    assert isinstance(loss.weight_regularizer, RegularFaceRegularizer) and loss.weight_regularizer.weight == 0.1
    assert isinstance(loss.embedding_regularizer, LpRegularizer) and loss.embedding_regularizer.power == 2
    x, labels = labelled()
    plain = ArcFaceLoss(4, 8)
    plain.weight.data.copy_(loss.weight.data)
    expected = plain(x, labels) + 0.1 * RegularFaceRegularizer()(loss.weight) + 0.01 * (x * x).sum(dim=1).mean()
    torch.testing.assert_close(loss(x, labels), expected)
    with pytest.raises(ConfigError, match="unknown loss.weight_regularizer 'regularface'"):
        load_run_config(None, ["train.path=data.jsonl", "loss.name=arc_face", "loss.weight_regularizer=regularface"])
    with pytest.raises(ValueError, match="no class weights"):
        build_loss({"name": "triplet", "weight_regularizer": {"name": "lp"}})


def test_model_card_cites_the_loss_and_its_regularizers():
    from textdml.hub.model_card import render_model_card

    config = load_run_config(None, ["train.path=data.jsonl", "loss.name=arc_face"])
    loss = ArcFaceLoss(4, 8, weight_regularizer="regular_face", embedding_regularizer="lp")
    card = render_model_card(config, loss, [])
    assert "deng2019arcface" in card
    assert "zhao2019regularface" in card and "sohn2016improved" in card


def test_sparse_centers_reads_the_centres_per_class_from_the_loss():
    loss = ArcFaceLoss(4, 8, sub_centers=3, weight_regularizer={"name": "sparse_centers", "weight": 0.5})
    assert (loss.weight_regularizer.num_classes, loss.weight_regularizer.centers_per_class) == (4, 3)
    expected = 0.5 * pml_regularizers.SparseCentersRegularizer(4, 3)(loss.weight)
    torch.testing.assert_close(loss.weight_regularizer(loss.weight), expected)
    with pytest.raises(ValueError, match="expected 4 x 2 = 8 centres"):
        SparseCentersRegularizer(num_classes=4, centers_per_class=2)(loss.weight)
