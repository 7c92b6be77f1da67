from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from textdml.models import Embedder, Pooling
from textdml.models.encoding import PackedTokens

TEXTS = ["a cat sat on the mat", "a much longer sentence about the weather in spring and autumn", "x", "dogs bark"]


def test_minilm_matches_sentence_transformers(minilm_path):
    ours = Embedder.from_pretrained(minilm_path)
    assert ours.pooling.mode == "mean" and ours.normalize and ours.max_seq_length == 256
    theirs = SentenceTransformer(str(minilm_path), device="cpu")
    np.testing.assert_allclose(ours.encode(TEXTS), theirs.encode(TEXTS), atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last_token", "weighted_mean"])
@pytest.mark.parametrize("dense_dim", [None, 16])
def test_save_loads_in_sentence_transformers(tiny_model_dir, tmp_path, pooling, dense_dim):
    if pooling == "last_token" and dense_dim:
        pytest.skip("covered by the other combinations")
    model = Embedder.from_pretrained(tiny_model_dir, pooling=pooling, dense_dim=dense_dim, normalize=True)
    expected = model.encode(TEXTS)
    model.save_pretrained(tmp_path / "saved")
    st = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), expected, atol=1e-5)
    reloaded = Embedder.from_pretrained(tmp_path / "saved")
    assert reloaded.pooling.mode == pooling and reloaded.embedding_dim == (dense_dim or 32)
    np.testing.assert_allclose(reloaded.encode(TEXTS), expected, atol=1e-6)


def test_plain_hf_model_defaults_to_mean_pooling(tiny_model_dir):
    model = Embedder.from_pretrained(tiny_model_dir)
    assert model.pooling.mode == "mean" and not model.normalize and model.similarity == "cosine"


def test_encode_keeps_input_order_and_batches_agree(tiny_embedder):
    one_by_one = np.stack([tiny_embedder.encode(t) for t in TEXTS])
    np.testing.assert_allclose(tiny_embedder.encode(TEXTS, batch_size=3), one_by_one, atol=1e-5)
    as_torch = tiny_embedder.encode(TEXTS, convert_to="torch", normalize=True)
    assert isinstance(as_torch, torch.Tensor)
    torch.testing.assert_close(as_torch.norm(dim=1), torch.ones(len(TEXTS)))


def test_encode_batches_texts_by_token_count(tiny_embedder, monkeypatch):
    # Short in characters but long in tokens, and the reverse: sorting by characters would mix them.
    texts = ["a b c d e f g h i j", "internationalization", "x y z", "photosynthesis", "a b", "cat"] * 3
    lengths, shapes = [], []
    real_forward = type(tiny_embedder).forward

    def recording_forward(self, features):
        lengths.extend(features["attention_mask"].sum(dim=1).tolist())
        shapes.append(tuple(features["attention_mask"].shape))
        return real_forward(self, features)

    monkeypatch.setattr(type(tiny_embedder), "forward", recording_forward)
    tiny_embedder.encode(texts, batch_size=4)
    assert lengths == sorted(lengths, reverse=True) and len(lengths) == len(texts)
    # Even token budgets: fewer rows of long texts, more of short ones, never more than 4 x the mean.
    budget = 4 * sum(lengths) / len(lengths)
    assert all(rows * width <= budget for rows, width in shapes if rows > 1)
    assert shapes[0][0] < 4 < max(rows for rows, _ in shapes)
    by_characters = [len(tiny_embedder.tokenizer(t)["input_ids"]) for t in sorted(texts, key=len, reverse=True)]
    assert by_characters != sorted(by_characters, reverse=True)  # characters would have ordered them otherwise


def test_encode_restores_training_mode(tiny_embedder):
    tiny_embedder.train()
    tiny_embedder.encode(TEXTS)
    assert tiny_embedder.training


def test_pooling_modes_on_padding():
    tokens = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])  # (2, 3, 1)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert Pooling("mean")(tokens, mask).flatten().tolist() == [2.0, 4.0]
    assert Pooling("max")(tokens, mask).flatten().tolist() == [3.0, 6.0]
    assert Pooling("cls")(tokens, mask).flatten().tolist() == [1.0, 2.0]
    assert Pooling("last_token")(tokens, mask).flatten().tolist() == [3.0, 6.0]
    left_padded = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert Pooling("last_token")(tokens, left_padded).flatten().tolist() == [100.0, 6.0]
    # weights 1, 2 for the first row: (1*1 + 2*3) / 3
    assert Pooling("weighted_mean")(tokens, mask).flatten().tolist()[0] == pytest.approx(7 / 3)


def test_unknown_pooling_names_close_match(tiny_model_dir):
    with pytest.raises(ValueError, match="did you mean 'mean'"):
        Embedder.from_pretrained(tiny_model_dir, pooling="meen")


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Embedder.from_pretrained(str(tmp_path / "nope"))


def test_unreachable_hub_id_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="could not be fetched from the Hugging Face Hub"):
        Embedder.from_pretrained("textdml-tests/model-that-does-not-exist")


def test_identity_changes_with_weights(tiny_embedder):
    before = tiny_embedder.identity()
    with torch.no_grad():
        tiny_embedder.transformer.embeddings.word_embeddings.weight[0, 0] += 1
    after = tiny_embedder.identity()
    assert before["model_name"] == after["model_name"] and before["weights_sha256"] != after["weights_sha256"]


def test_lora_trains_adapters_and_saves_merged(tiny_model_dir, tmp_path):
    model = Embedder.from_pretrained(tiny_model_dir)
    model.add_lora(r=4, alpha=8, dropout=0.0, target_modules=["query", "value"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    expected = model.encode(TEXTS)
    model.save_pretrained(tmp_path / "merged")
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "merged"), device="cpu").encode(TEXTS), expected,
                               atol=1e-5)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_fast_padding_matches_the_tokenizer_padding(tiny_embedder, padding_side):
    tokenizer = tiny_embedder.tokenizer
    tokenizer.padding_side = padding_side
    try:
        texts = TEXTS + ["é ü naïve café " * 100]  # truncated at max_seq_length
        expected = tokenizer(texts, padding=True, truncation=True, max_length=tiny_embedder.max_seq_length,
                             return_tensors="pt")
        ours = tiny_embedder.tokenize(texts)
        assert set(ours) == set(expected)
        for key in expected:
            assert ours[key].dtype == torch.int64 and torch.equal(ours[key], expected[key]), key
        buckets, restore = tiny_embedder.tokenize_buckets(texts, bucket_rows=2)
        encoded = tokenizer(texts, truncation=True, max_length=tiny_embedder.max_seq_length)
        order = torch.argsort(restore).tolist()
        for start, bucket in zip(range(0, len(texts), 2), buckets, strict=True):
            rows = order[start : start + 2]
            want = tokenizer.pad({k: [v[i] for i in rows] for k, v in encoded.items()}, return_tensors="pt")
            assert all(torch.equal(bucket[key], want[key]) for key in want)
        packed = PackedTokens.tokenize(tokenizer, texts, tiny_embedder.max_seq_length)
        for rows in ([3, 0, len(texts) - 1], [1], list(range(len(texts)))):  # any rows, any order
            want = tokenizer.pad({k: [v[i] for i in rows] for k, v in encoded.items()}, return_tensors="pt")
            got = packed.padded(rows, tokenizer)
            assert set(got) == set(want) and all(torch.equal(got[key], want[key]) for key in want)
    finally:
        tokenizer.padding_side = "right"


def test_padding_without_a_pad_token_names_the_fix(tiny_model_dir):
    model = Embedder.from_pretrained(tiny_model_dir)
    model.tokenizer.pad_token = None
    with pytest.raises(ValueError, match="no pad token.*set tokenizer.pad_token"):
        model.tokenize(["a cat", "a dog barks"])


def test_max_seq_length_defaults_to_what_the_position_embeddings_allow(tiny_model_dir):
    """The tiny BERT has 128 positions but MiniLM's tokenizer (512): a long text must be cut at 128,
    not overrun the position embeddings (found by indexing 100k WordNet definitions)."""
    from textdml.models import Embedder

    model = Embedder.from_pretrained(tiny_model_dir)
    positions = model.transformer.config.max_position_embeddings
    assert model.tokenizer.model_max_length > positions
    assert model.max_seq_length == positions
    long_text = " ".join(["word"] * (3 * positions))
    assert model.encode([long_text, "short"]).shape == (2, model.embedding_dim)
