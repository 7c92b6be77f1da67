"""Prompts by role and Matryoshka truncation: encode, save/load (sentence-transformers too), collator, evaluation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

from textdml.data.collator import RoleCollator
from textdml.data.roles import ColumnRoles
from textdml.evaluation.retrieval import InformationRetrievalEvaluator
from textdml.models import Embedder

PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = ["a cat sat on the mat", "stock prices fell sharply today", "the dog barked"]


@pytest.fixture
def prompted(tiny_model_dir) -> Embedder:
    return Embedder.from_pretrained(tiny_model_dir, normalize=True, prompts=PROMPTS)


def test_prompt_name_and_role_helpers_prepend_the_prompt(prompted: Embedder) -> None:
    plain = prompted.encode(["query: " + t for t in TEXTS])
    np.testing.assert_allclose(prompted.encode(TEXTS, prompt_name="query"), plain, atol=1e-6)
    np.testing.assert_allclose(prompted.encode_query(TEXTS), plain, atol=1e-6)
    np.testing.assert_allclose(prompted.encode_document(TEXTS), prompted.encode(["passage: " + t for t in TEXTS]),
                               atol=1e-6)
    np.testing.assert_allclose(prompted.encode(TEXTS, prompt="x "), prompted.encode(["x " + t for t in TEXTS]), atol=1e-6)
    assert not np.allclose(prompted.encode(TEXTS), plain)  # no prompt by default


def test_unknown_prompt_name_is_an_error(prompted: Embedder) -> None:
    with pytest.raises(ValueError, match="'question' is not one of this model's prompts"):
        prompted.encode(TEXTS, prompt_name="question")


def test_prompts_are_saved_for_sentence_transformers(prompted: Embedder, tmp_path) -> None:
    prompted.save_pretrained(tmp_path / "m")
    reloaded = Embedder.from_pretrained(tmp_path / "m")
    assert reloaded.prompts == PROMPTS
    st_model = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert st_model.prompts == PROMPTS
    theirs = st_model.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    np.testing.assert_allclose(reloaded.encode(TEXTS, prompt_name="query"), theirs, atol=1e-5)


def test_prompts_for_a_model_saved_without_them_warn(tiny_embedder: Embedder, tmp_path) -> None:
    tiny_embedder.save_pretrained(tmp_path / "plain")
    with pytest.warns(UserWarning, match="saved without prompts"):
        model = Embedder.from_pretrained(tmp_path / "plain", prompts=PROMPTS)
    assert model.prompts == PROMPTS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Embedder.from_pretrained(tmp_path / "plain")  # no prompts asked: nothing to warn about


@pytest.mark.parametrize("dim", [8, 16])
def test_truncate_dim_keeps_the_first_coordinates(prompted: Embedder, tmp_path, dim: int) -> None:
    full = prompted.encode(TEXTS, convert_to="torch")
    cut = prompted.encode(TEXTS, truncate_dim=dim, convert_to="torch")
    assert cut.shape == (3, dim)
    torch.testing.assert_close(cut, full[:, :dim])  # as sentence-transformers: not re-normalised
    renormalised = prompted.encode(TEXTS, truncate_dim=dim, normalize=True, convert_to="torch")
    torch.testing.assert_close(renormalised, F.normalize(full[:, :dim], dim=-1))
    prompted.save_pretrained(tmp_path / "m")
    st_model = SentenceTransformer(str(tmp_path / "m"), device="cpu", truncate_dim=dim)
    np.testing.assert_allclose(cut.numpy(), st_model.encode(TEXTS, convert_to_numpy=True), atol=1e-5)
    np.testing.assert_allclose(renormalised.numpy(), st_model.encode(TEXTS, normalize_embeddings=True,
                                                                     convert_to_numpy=True), atol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_truncate_dim_at_load_matches_sentence_transformers(tiny_model_dir, tmp_path, normalize: bool) -> None:
    # SentenceTransformer(path, truncate_dim=8): every encode returns 8-d vectors (not re-normalised).
    Embedder.from_pretrained(tiny_model_dir, normalize=normalize).save_pretrained(tmp_path / "m")
    model = Embedder.from_pretrained(tmp_path / "m", truncate_dim=8)
    st_model = SentenceTransformer(str(tmp_path / "m"), device="cpu", truncate_dim=8)
    ours = model.encode(TEXTS)
    assert ours.shape == (3, 8)
    np.testing.assert_allclose(ours, st_model.encode(TEXTS, convert_to_numpy=True), atol=1e-5)
    np.testing.assert_allclose(model.encode(TEXTS, normalize=True),
                               st_model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True), atol=1e-5)
    assert model.get_embedding_dimension() == st_model.get_embedding_dimension() == 8
    assert model.get_sentence_embedding_dimension() == 8
    assert model.encode(TEXTS, truncate_dim=4).shape == (3, 4)  # the call's own size wins, as in ST
    from textdml.models.identity import model_identity

    assert model_identity(model).vector_size == 8  # an index sizes its collection for what encode returns


def test_truncate_dim_at_load_outside_the_embedding_is_an_error(tiny_model_dir) -> None:
    with pytest.raises(ValueError, match="truncate_dim must be in 1..32"):
        Embedder.from_pretrained(tiny_model_dir, truncate_dim=64)


def test_truncate_dim_outside_the_embedding_is_an_error(prompted: Embedder) -> None:
    with pytest.raises(ValueError, match="truncate_dim must be in 1..32"):
        prompted.encode(TEXTS, truncate_dim=64)


def test_collator_prompts_anchors_as_queries_and_the_rest_as_documents(prompted: Embedder) -> None:
    seen: list[list[str]] = []

    class Recorder:
        prompts = PROMPTS

        def tokenize(self, texts: list[str]) -> dict:
            seen.append(texts)
            return {"input_ids": torch.zeros(len(texts), 1)}

    roles = ColumnRoles(kind="triplets", anchor="anchor", positive="positive", negatives=("negative",))
    rows = [{"anchor": "a", "positive": "b", "negative": "c"}, {"anchor": "d", "positive": "b", "negative": "e"}]
    batch = RoleCollator(Recorder(), roles)(rows)
    assert seen == [["query: a", "query: d"], ["passage: b", "passage: b"], ["passage: c", "passage: e"]]
    assert batch["labels"][0] == batch["labels"][1]  # labels come from the texts, not the prompted texts


class RecordingEncoder:
    """Encodes by text length; records the prompts it was asked for."""

    similarity = "cosine"
    embedding_dim = 4
    prompts = PROMPTS

    def __init__(self) -> None:
        self.prompts_seen: list[str] = []

    def encode(self, texts, batch_size=32, normalize=None, show_progress_bar=None, convert_to="numpy", prompt=""):
        self.prompts_seen.append(prompt)
        rows = [[len(t), t.count("a") + 1.0, t.count("e") + 1.0, 1.0] for t in texts]
        return torch.tensor(rows)


def test_retrieval_evaluator_uses_query_and_document_prompts_and_scores_each_size() -> None:
    evaluator = InformationRetrievalEvaluator({"q1": "a cat", "q2": "the end"},
                                              {"d1": "a cat sat", "d2": "the end came", "d3": "zzz"},
                                              {"q1": {"d1"}, "q2": {"d2"}}, name="toy", truncate_dims=[2])
    model = RecordingEncoder()
    results = evaluator(model)
    assert model.prompts_seen == ["query: ", "passage: "]
    assert "toy_ndcg@10" in results and "toy_dim2_ndcg@10" in results
    hits = evaluator.search_at_sizes(model)
    assert set(hits) == {None, 2}
