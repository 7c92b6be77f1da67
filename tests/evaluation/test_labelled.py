from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from textdml.evaluation.labelled import labelled_retrieval_metrics


def random_labelled(n: int = 60, dim: int = 8, num_classes: int = 7, seed: int = 0):
    """Clustered embeddings with uneven class sizes, including one class of a single row."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes - 1, (n - 1,), generator=generator)
    labels = torch.cat([labels, torch.tensor([num_classes - 1])])
    centres = torch.randn(num_classes, dim, generator=generator)
    return centres[labels] + 1.2 * torch.randn(n, dim, generator=generator), labels


def naive_metrics(embeddings, labels, ks, distance):
    """Leave-one-out ranking of each query, written out one query at a time."""
    x = embeddings / embeddings.norm(dim=1, keepdim=True) if distance == "cosine" else embeddings
    per_query = {f"recall@{k}": [] for k in ks} | {"map@r": [], "r_precision": []}
    for q in range(len(x)):
        others = [j for j in range(len(x)) if j != q]
        if distance == "euclidean":
            score = {j: -float((x[q] - x[j]).norm()) for j in others}
        else:
            score = {j: float(x[q] @ x[j]) for j in others}
        ranked = sorted(others, key=lambda j: score[j], reverse=True)
        relevant = [bool(labels[j] == labels[q]) for j in ranked]
        r = sum(relevant)
        if r == 0:
            continue
        for k in ks:
            per_query[f"recall@{k}"].append(float(any(relevant[:k])))
        per_query["r_precision"].append(sum(relevant[:r]) / r)
        precisions = [sum(relevant[: i + 1]) / (i + 1) for i in range(r) if relevant[i]]
        per_query["map@r"].append(sum(precisions) / r)
    return {name: sum(values) / len(values) for name, values in per_query.items()}


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "dot"])
@pytest.mark.parametrize("chunk_size", [7, 4096])
def test_matches_naive_loop(distance, chunk_size):
    embeddings, labels = random_labelled()
    ks = (1, 2, 4, 8)
    metrics = labelled_retrieval_metrics(embeddings, labels, ks, distance, chunk_size, compute_nmi=False)
    expected = naive_metrics(embeddings, labels, ks, distance)
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-12), name


def sklearn_kmeans(x, num_clusters):
    return torch.from_numpy(KMeans(n_clusters=num_clusters, n_init=1, random_state=0).fit_predict(x.cpu().numpy()))


@pytest.mark.parametrize(
    "distance,pml_distance",
    [
        ("cosine", CosineSimilarity()),
        ("euclidean", LpDistance(normalize_embeddings=False)),
        ("dot", DotProductSimilarity(normalize_embeddings=False)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pml_accuracy_calculator(distance, pml_distance, seed):
    embeddings, labels = random_labelled(n=80, seed=seed)
    if distance == "cosine":
        # AccuracyCalculator clusters the raw query rows; ours clusters the normalised ones.
        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision", "NMI"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(pml_distance),
        kmeans_func=sklearn_kmeans,
    )
    theirs = calculator.get_accuracy(embeddings, labels)
    ours = labelled_retrieval_metrics(embeddings, labels, ks=(1,), distance=distance, seed=0)
    assert ours["recall@1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-6)
    assert ours["nmi"] == pytest.approx(theirs["NMI"], abs=1e-6)


def test_nmi_is_sklearn_on_kmeans_clusters():
    embeddings, labels = random_labelled()
    normalised = torch.nn.functional.normalize(embeddings, dim=-1).numpy()
    clusters = KMeans(n_clusters=7, n_init=1, random_state=3).fit_predict(normalised)
    expected = normalized_mutual_info_score(labels.numpy(), clusters)
    assert labelled_retrieval_metrics(embeddings, labels, seed=3)["nmi"] == pytest.approx(expected)


def test_perfect_and_string_labels():
    embeddings = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.0, 1.0], [0.1, 0.99]])
    metrics = labelled_retrieval_metrics(embeddings, np.array(["a", "a", "a", "b", "b"]), ks=(1, 4))
    assert metrics == {"recall@1": 1.0, "recall@4": 1.0, "map@r": 1.0, "r_precision": 1.0, "nmi": pytest.approx(1.0)}


def test_half_precision_and_numpy_inputs():
    embeddings, labels = random_labelled()
    reference = labelled_retrieval_metrics(embeddings, labels, compute_nmi=False)
    from_numpy = labelled_retrieval_metrics(embeddings.numpy(), labels.numpy(), compute_nmi=False)
    assert from_numpy == reference
    in_bf16 = labelled_retrieval_metrics(embeddings.bfloat16(), labels, compute_nmi=False)
    assert all(abs(in_bf16[name] - value) < 0.05 for name, value in reference.items())


def test_no_class_with_two_rows_gives_nan():
    metrics = labelled_retrieval_metrics(torch.randn(4, 3), [0, 1, 2, 3], compute_nmi=False)
    assert all(math.isnan(value) for value in metrics.values())


@pytest.mark.parametrize("distance,match", [("hamming", "distance"), ("cosine", "two rows")])
def test_invalid_inputs_raise(distance, match):
    with pytest.raises(ValueError, match=match):
        labelled_retrieval_metrics(torch.randn(1, 3), [0], distance=distance)


def test_the_labelled_evaluators_metric_names_are_the_keys_of_its_results():
    from tests.fakes import HashingEncoder
    from textdml.evaluation.build import LabelledRetrievalEvaluator

    for name in ("", "held_out"):
        evaluator = LabelledRetrievalEvaluator([f"word {i % 4} text {i}" for i in range(12)], [i % 4 for i in range(12)],
                                               name=name)
        assert evaluator.metric_names == list(evaluator(HashingEncoder()))
