"""Hard-negative mining: sentence-transformers parity, filters, resume, bad input."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives as st_mine_hard_negatives

from textdml.mining import MiningSettings, mine_hard_negatives
from textdml.mining.cross_encoder import CrossEncoderScorer
from textdml.models import Embedder


def negatives_of(dataset: Dataset, k: int) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(row["anchor"], row["positive"], tuple(row[f"negative_{i}"] for i in range(1, k + 1))) for row in dataset]


SETTINGS = [
    {},
    {"range_min": 2, "range_max": 12},
    {"absolute_margin": 0.0},
    {"relative_margin": 0.05, "num_negatives": 2},
    {"max_score": 0.9, "num_negatives": 4},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=[json.dumps(s) for s in SETTINGS])
def test_same_negatives_as_sentence_transformers(saved_model, pairs, corpus, settings: dict) -> None:
    k = settings.get("num_negatives", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = st_mine_hard_negatives(pairs, SentenceTransformer(str(saved_model), device="cpu"), corpus=corpus,
                                        output_format="n-tuple", output_scores=True, verbose=False,
                                        batch_size=16, **settings)
    ours = mine_hard_negatives(pairs, Embedder.from_pretrained(saved_model), corpus=corpus, show_progress_bar=False,
                               **settings)
    assert negatives_of(ours, k) == negatives_of(theirs, k)
    torch.testing.assert_close(torch.tensor(ours["scores"]), torch.tensor(theirs["scores"]), atol=1e-5, rtol=1e-5)


def test_known_positives_are_never_negatives_even_as_corpus_duplicates(saved_model, pairs, corpus) -> None:
    # Every positive also appears in the corpus (by text): it must not come back as a negative.
    mined = mine_hard_negatives(pairs, Embedder.from_pretrained(saved_model), corpus=corpus + list(pairs["positive"]),
                                num_negatives=5, show_progress_bar=False)
    positives_of: dict[str, set[str]] = {}
    for row in pairs:
        positives_of.setdefault(row["anchor"], set()).add(row["positive"])
    for row in mined:
        negatives = {row[f"negative_{i}"] for i in range(1, 6)}
        assert not negatives & positives_of[row["anchor"]]
        assert row["scores"][1:] == sorted(row["scores"][1:], reverse=True)


def test_random_sampling_is_seeded_and_within_the_window(saved_model, pairs, corpus) -> None:
    model = Embedder.from_pretrained(saved_model)
    settings = MiningSettings(num_negatives=2, range_max=10, sampling_strategy="random", seed=3)
    first = mine_hard_negatives(pairs, model, corpus=corpus, settings=settings, show_progress_bar=False)
    again = mine_hard_negatives(pairs, model, corpus=corpus, settings=settings, show_progress_bar=False)
    top = mine_hard_negatives(pairs, model, corpus=corpus, num_negatives=10, range_max=10, show_progress_bar=False)
    assert negatives_of(first, 2) == negatives_of(again, 2)
    windows = {(r["anchor"], r["positive"]): {r[f"negative_{i}"] for i in range(1, 11)} for r in top}
    for row in first:
        assert {row["negative_1"], row["negative_2"]} <= windows[(row["anchor"], row["positive"])]


def die_on_third_shard(monkeypatch) -> dict[str, int]:
    """Make mining raise KeyboardInterrupt (a kill) at its third shard; returns the shard-call counter."""
    import textdml.mining.hard_negatives as mining

    real, calls = mining.mine_shard, {"n": 0}

    def dies_on_third_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mining, "mine_shard", dies_on_third_shard)
    return calls


def test_output_folder_holds_the_table_and_settings_and_resumes(saved_model, pairs, corpus, tmp_path, monkeypatch) -> None:
    model = Embedder.from_pretrained(saved_model)
    unbroken = mine_hard_negatives(pairs, model, corpus=corpus, sampling_strategy="random", num_negatives=2,
                                   range_max=8, shard_size=8, show_progress_bar=False)
    calls = die_on_third_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        mine_hard_negatives(pairs, model, corpus=corpus, sampling_strategy="random", num_negatives=2, range_max=8,
                            shard_size=8, output_dir=tmp_path, show_progress_bar=False)
    assert len(list((tmp_path / "shards").glob("shard-*.parquet"))) == 2
    calls["n"] = -100  # no more deaths; count the shards mined on resume
    resumed = mine_hard_negatives(pairs, model, corpus=corpus, sampling_strategy="random", num_negatives=2,
                                  range_max=8, shard_size=8, output_dir=tmp_path, show_progress_bar=False)
    assert calls["n"] == -100 + 2  # 30 unique anchors in shards of 8: shards 3 and 4 only
    assert negatives_of(resumed, 2) == negatives_of(unbroken, 2)
    saved = json.loads((tmp_path / "mining_settings.json").read_text())
    assert saved["settings"]["num_negatives"] == 2 and saved["model"]["weights_sha256"] == model.weights_sha256()
    assert Dataset.from_parquet(str(tmp_path / "mined.parquet")).num_rows == resumed.num_rows
    with pytest.raises(ValueError, match="other data, model or settings"):
        mine_hard_negatives(pairs, model, corpus=corpus, num_negatives=3, output_dir=tmp_path, show_progress_bar=False)


def test_settings_file_of_a_resumed_mining_counts_the_whole_table(saved_model, pairs, corpus, tmp_path,
                                                                   monkeypatch) -> None:
    model = Embedder.from_pretrained(saved_model)
    options = {"corpus": corpus, "num_negatives": 2, "absolute_margin": 0.0, "range_max": 10, "shard_size": 8,
               "show_progress_bar": False}
    mine_hard_negatives(pairs, model, output_dir=tmp_path / "unbroken", **options)
    die_on_third_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        mine_hard_negatives(pairs, model, output_dir=tmp_path / "resumed", **options)
    mine_hard_negatives(pairs, model, output_dir=tmp_path / "resumed", **options)
    mine_hard_negatives(pairs, model, output_dir=tmp_path / "resumed", **options)  # all shards saved: none mined
    unbroken, resumed = (json.loads((tmp_path / run / "mining_settings.json").read_text())
                         for run in ("unbroken", "resumed"))
    counts = ("rows", "dropped_rows", "skipped_candidates")
    assert unbroken["skipped_candidates"]["absolute_margin"] > 0 and unbroken["dropped_rows"] > 0
    assert {k: resumed[k] for k in counts} == {k: unbroken[k] for k in counts}


def test_rows_without_enough_candidates_are_dropped_and_counted(saved_model, pairs, corpus, tmp_path) -> None:
    mined = mine_hard_negatives(pairs, Embedder.from_pretrained(saved_model), corpus=corpus, max_score=-0.5,
                                output_dir=tmp_path, show_progress_bar=False)
    saved = json.loads((tmp_path / "mining_settings.json").read_text())
    assert saved["dropped_rows"] == len(pairs) - mined.num_rows > 0
    assert saved["skipped_candidates"]["max_score"] > 0


def test_rows_without_enough_candidates_can_be_filled_with_random_documents(saved_model, pairs, corpus,
                                                                            tmp_path) -> None:
    model = Embedder.from_pretrained(saved_model)
    kept = mine_hard_negatives(pairs, model, corpus=corpus, num_negatives=2, absolute_margin=0.0, range_max=10,
                               show_progress_bar=False)
    filled = mine_hard_negatives(pairs, model, corpus=corpus, num_negatives=2, absolute_margin=0.0, range_max=10,
                                 fill_with_random=True, output_dir=tmp_path, show_progress_bar=False)
    assert kept.num_rows < filled.num_rows == len(pairs)  # no row dropped
    saved = json.loads((tmp_path / "mining_settings.json").read_text())
    assert saved["dropped_rows"] == 0 and saved["skipped_candidates"]["filled_with_random"] > 0
    # Rows the filters left whole are unchanged; fillers are no positive of their anchor, no
    # repeat within their row, and carry the model's score.
    assert set(negatives_of(kept, 2)) <= set(negatives_of(filled, 2))
    positives_of: dict[str, set[str]] = {}
    for row in pairs:
        positives_of.setdefault(row["anchor"], set()).add(row["positive"])
    vectors = dict(zip(corpus + list(pairs["positive"]), model.encode(corpus + list(pairs["positive"]),
                                                                       convert_to="torch"), strict=False))
    for row in filled:
        negatives = [row["negative_1"], row["negative_2"]]
        assert len(set(negatives)) == 2 and not set(negatives) & positives_of[row["anchor"]]
        anchor = model.encode([row["anchor"]], convert_to="torch")[0]
        expected = [float(vectors[text] @ anchor) for text in negatives]
        torch.testing.assert_close(torch.tensor(row["scores"][1:]), torch.tensor(expected), atol=1e-5, rtol=1e-5)
    again = mine_hard_negatives(pairs, model, corpus=corpus, num_negatives=2, absolute_margin=0.0, range_max=10,
                                fill_with_random=True, show_progress_bar=False)
    assert negatives_of(again, 2) == negatives_of(filled, 2)  # seeded


def test_cross_encoder_rescores_candidates(saved_model, pairs, corpus, tmp_path, tiny_model_dir) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "ce")
    tokenizer.save_pretrained(tmp_path / "ce")
    scorer = CrossEncoderScorer(tmp_path / "ce")
    mined = mine_hard_negatives(pairs, Embedder.from_pretrained(saved_model), corpus=corpus, cross_encoder=scorer,
                                show_progress_bar=False)
    row = mined[0]
    expected = scorer.predict([(row["anchor"], row["positive"]), (row["anchor"], row["negative_1"])])
    torch.testing.assert_close(torch.tensor(row["scores"][:2]), expected, atol=1e-5, rtol=1e-5)


def test_cross_encoder_that_is_not_a_model_is_an_error(tmp_path) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(ValueError, match="is not a model folder"):
        CrossEncoderScorer(tmp_path / "notes")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_negatives": 0}, "num_negatives must be >= 1"), ({"range_min": 5, "range_max": 6}, "leaves 1 candidates"),
     ({"anchor_column": "question"}, "mining needs columns")],
)
def test_bad_settings_are_errors(saved_model, pairs, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mine_hard_negatives(pairs, Embedder.from_pretrained(saved_model), show_progress_bar=False, **kwargs)


def test_corpus_too_small_is_an_error(saved_model) -> None:
    tiny = Dataset.from_dict({"anchor": ["a cat", "a dog"], "positive": ["cat text", "dog text"]})
    with pytest.raises(ValueError, match="too few to mine 3 negatives"):
        mine_hard_negatives(tiny, Embedder.from_pretrained(saved_model), show_progress_bar=False)


@pytest.mark.parametrize("path", ["no/such/cross_encoder", "./missing_ce", "missing_ce"])
def test_missing_cross_encoder_path_is_one_clear_line(path: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"cross-encoder path '{path}' does not exist; pass the folder") as caught:
        CrossEncoderScorer(path)
    assert "Repo id" not in str(caught.value) and "\n" not in str(caught.value)


def test_embedding_model_is_not_taken_as_a_cross_encoder(tiny_model_dir, saved_model) -> None:
    # Neither a plain encoder nor a sentence-transformers folder has a classification head: no random one.
    for folder in (tiny_model_dir, saved_model):
        with pytest.raises(ValueError, match=rf"cross-encoder '{folder}' has no classification head .*classifier"):
            CrossEncoderScorer(folder)
