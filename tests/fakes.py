"""Small deterministic stand-ins for real models, shared by tests (imported as ``tests.fakes``)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch


def word_bucket(word: str, num_buckets: int) -> int:
    # hashlib, not hash(): Python salts str hashes per process.
    return int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little") % num_buckets


class HashingEncoder:
    """Hashed bag of words -> fixed random projection; follows ``textdml.models.protocols.SupportsEncode``.

    Texts sharing words get close embeddings, so a document's own text retrieves it. ``calls`` and
    ``texts_encoded`` count the work done, and ``fail_after_calls`` raises on a later call to
    simulate a crash in the middle of a run.
    """

    def __init__(
        self,
        embedding_dim: int = 16,
        similarity: Literal["cosine", "dot"] = "cosine",
        num_buckets: int = 128,
        seed: int = 0,
        model_name: str = "fake/hashing-encoder",
        fail_after_calls: int | None = None,
    ):
        self.embedding_dim = embedding_dim
        self.similarity = similarity
        self.num_buckets = num_buckets
        self.model_name = model_name
        self.projection = np.random.default_rng(seed).standard_normal((num_buckets, embedding_dim)).astype(np.float32)
        self.fail_after_calls = fail_after_calls
        self.calls = 0
        self.texts_encoded = 0

    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress_bar: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
    ) -> np.ndarray | torch.Tensor:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.texts_encoded += len(texts)
        counts = np.zeros((len(texts), self.num_buckets), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                counts[row, word_bucket(word, self.num_buckets)] += 1
        embeddings = counts @ self.projection  # (N, D)
        should_normalize = self.similarity == "cosine" if normalize is None else normalize
        if should_normalize:
            embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        if convert_to == "torch":
            import torch  # here: child processes in the index tests start faster without it

            return torch.from_numpy(embeddings)
        return embeddings

    def identity(self) -> dict[str, str]:
        return {"model_name": self.model_name, "weights_sha256": hashlib.sha256(self.projection.tobytes()).hexdigest()}


WORDS = ("cat dog bird fish tree river stone cloud rain snow wind fire light dark north south east west "
         "apple bread cheese wine tea milk sugar salt iron gold silver copper glass paper wood wool").split()


def toy_corpus(num_docs: int = 40, words_per_doc: int = 6, seed: int = 0) -> dict[str, str]:
    """``{"d000": "cat river ...", ...}``: random word lists, distinct enough to retrieve themselves."""
    rng = np.random.default_rng(seed)
    return {f"d{i:03d}": " ".join(rng.choice(WORDS, size=words_per_doc)) for i in range(num_docs)}


def toy_queries(
    corpus: dict[str, str], num_queries: int = 12, seed: int = 1
) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Queries made of a few words of one or two documents, with those documents as relevant."""
    rng = np.random.default_rng(seed)
    doc_ids = sorted(corpus)
    queries, relevant = {}, {}
    for i in range(num_queries):
        chosen = rng.choice(doc_ids, size=1 + i % 2, replace=False)
        words = [word for doc_id in chosen for word in corpus[doc_id].split()[:3]]
        queries[f"q{i:02d}"] = " ".join(words)
        relevant[f"q{i:02d}"] = {str(doc_id) for doc_id in chosen}
    return queries, relevant


# Six (example, definition) pairs: the data of the CLI tests' small recipes.
CLI_PAIRS = [("a kitten sleeps", "a young cat"), ("the hound barked", "a dog used for hunting"),
         ("rain fell all day", "water falling from clouds"), ("the oak grew tall", "a tree with acorns"),
         ("she sipped tea", "a hot drink made from leaves"), ("bread was baked", "food made of flour and water")]
