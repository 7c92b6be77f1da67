from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from textdml.data.batching import MultiDatasetBatchSampler, NoDuplicatesBatchSampler, TokenBudgetBatchSampler


def batch_of_each_row(batches: list[list[int]], num_rows: int) -> np.ndarray:
    """The batch number of every row (-1 for rows never sampled); fails if a row is sampled twice."""
    rows = np.concatenate([np.asarray(b, dtype=np.int64) for b in batches]) if batches else np.zeros(0, np.int64)
    assert len(np.unique(rows)) == len(rows), "a row appears twice in the epoch"
    batch_of_row = np.full(num_rows, -1)
    batch_of_row[rows] = np.repeat(np.arange(len(batches)), [len(b) for b in batches])
    return batch_of_row


def assert_no_duplicate_texts(batches: list[list[int]], text_ids: np.ndarray) -> None:
    """No (batch, text) pair occurs twice, counting every text column of a row (a row may repeat its own text)."""
    batch_of_row = batch_of_each_row(batches, len(text_ids))
    sampled = batch_of_row >= 0
    pairs = set()
    for row in np.flatnonzero(sampled):
        for text in set(text_ids[row].tolist()):
            key = (batch_of_row[row], text)
            assert key not in pairs, f"text {text} twice in batch {key[0]}"
            pairs.add(key)


def test_no_duplicates_on_200k_pairs() -> None:
    rng = np.random.default_rng(0)
    num_rows, batch_size = 200_000, 64
    # Positives drawn from 50k texts (each repeated ~4 times); anchors unique; a few hub texts.
    positive_ids = rng.integers(0, 50_000, num_rows)
    positive_ids[rng.random(num_rows) < 0.002] = 7  # one text in ~400 rows
    anchor_ids = np.arange(num_rows) + 1_000_000
    rows = [(f"q{a}", f"p{p}") for a, p in zip(anchor_ids.tolist(), positive_ids.tolist(), strict=True)]
    sampler = NoDuplicatesBatchSampler(rows, batch_size=batch_size, seed=3)
    batches = list(sampler)
    assert len(sampler) == len(batches)
    # Vectorised check: each (batch, text) occurs once; anchors and positives never share a text here.
    batch_of_row = batch_of_each_row(batches, num_rows)
    assert (batch_of_row >= 0).all(), "drop_last=False must sample every row"
    keys = batch_of_row.astype(np.int64) * 2_000_000 + positive_ids
    assert len(np.unique(keys)) == num_rows
    sizes = np.array([len(b) for b in batches])
    assert sizes.max() == batch_size
    assert sizes[sizes < batch_size].sum() < 0.01 * num_rows  # duplicates leave few rows in short batches


def test_no_duplicates_across_columns_and_list_columns() -> None:
    rng = np.random.default_rng(1)
    texts = rng.integers(0, 30, (300, 4))
    dataset = Dataset.from_dict({
        "anchor": [f"t{i}" for i in texts[:, 0]],
        "positive": [f"t{i}" for i in texts[:, 1]],
        "negatives": [[f"t{i}", f"t{j}"] for i, j in texts[:, 2:]],
        "label": rng.integers(0, 2, 300).tolist(),  # not a text: ignored
    })
    batches = list(NoDuplicatesBatchSampler(dataset, batch_size=6, seed=0))
    assert_no_duplicate_texts(batches, texts)
    assert (batch_of_each_row(batches, 300) >= 0).all()


def test_rows_and_column_mappings_give_the_same_batches() -> None:
    rows = [(f"a{i % 7}", f"b{i % 5}") for i in range(40)]
    columns = {"anchor": [a for a, _ in rows], "positive": [b for _, b in rows]}
    by_rows = list(NoDuplicatesBatchSampler(rows, batch_size=4, seed=2))
    assert by_rows == list(NoDuplicatesBatchSampler(columns, batch_size=4, seed=2))
    assert_no_duplicate_texts(by_rows, np.array([[i % 7, 100 + i % 5] for i in range(40)]))


def test_epochs_are_reproducible_and_differ() -> None:
    rows = [(f"a{i}", f"b{i % 13}") for i in range(100)]
    sampler, twin = NoDuplicatesBatchSampler(rows, 8, seed=1), NoDuplicatesBatchSampler(rows, 8, seed=1)
    first = list(sampler)
    assert first == list(sampler) == list(twin)
    sampler.set_epoch(1)
    assert list(sampler) != first
    twin.set_epoch(1)
    assert list(twin) == list(sampler)


def test_a_text_in_every_row_gives_single_row_batches() -> None:
    rows = [("same", f"b{i}") for i in range(20)]
    assert [len(b) for b in NoDuplicatesBatchSampler(rows, batch_size=4)] == [1] * 20
    assert list(NoDuplicatesBatchSampler(rows, batch_size=4, drop_last=True)) == []


def test_drop_last_yields_only_full_batches() -> None:
    rows = [(f"a{i % 30}", f"b{i}") for i in range(103)]
    batches = list(NoDuplicatesBatchSampler(rows, batch_size=10, drop_last=True))
    assert batches and all(len(b) == 10 for b in batches)
    assert_no_duplicate_texts(batches, np.array([[i % 30, 1000 + i] for i in range(103)]))


def test_a_row_may_repeat_its_own_text() -> None:
    assert sorted(map(sorted, NoDuplicatesBatchSampler([("x", "x"), ("y", "z")], batch_size=2))) == [[0, 1]]


@pytest.mark.parametrize("drop_last", [False, True])
def test_proportional_uses_every_batch_of_every_data_set(drop_last: bool) -> None:
    lengths, batch_size = [10, 3, 25], 4
    sampler = MultiDatasetBatchSampler(lengths, batch_size, "proportional", seed=0, drop_last=drop_last)
    batches = list(sampler)
    assert len(sampler) == len(batches)
    dataset_of_row = np.repeat(np.arange(3), lengths)
    counts = np.zeros(3, dtype=int)
    for batch in batches:
        datasets = set(dataset_of_row[batch].tolist())
        assert len(datasets) == 1
        counts[datasets.pop()] += 1
    expected = [n // batch_size if drop_last else -(-n // batch_size) for n in lengths]
    assert counts.tolist() == expected
    used = batch_of_each_row(batches, sum(lengths)) >= 0
    assert used.all() != drop_last
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_round_robin_takes_turns_until_one_runs_out() -> None:
    lengths = [8, 4, 12]  # 4, 2 and 6 batches of 2
    sampler = MultiDatasetBatchSampler(lengths, 2, "round_robin", seed=0)
    dataset_of_row = np.repeat(np.arange(3), lengths)
    turns = [int(dataset_of_row[b[0]]) for b in sampler]
    assert turns == [0, 1, 2, 0, 1, 2, 0]  # data set 1 is exhausted at its third turn
    assert len(sampler) == 7


def test_multi_dataset_with_inner_samplers() -> None:
    rows = [[(f"a{i % 3}", f"b{i}") for i in range(12)], [(f"c{i}", f"d{i}") for i in range(6)]]
    inner = [NoDuplicatesBatchSampler(r, batch_size=3, seed=0) for r in rows]
    sampler = MultiDatasetBatchSampler([12, 6], 3, "proportional", batch_samplers=inner)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(18))
    for batch in batches:
        assert all(i < 12 for i in batch) or all(i >= 12 for i in batch)
    sampler.set_epoch(4)
    assert inner[0].epoch == inner[1].epoch == 4


def test_multi_dataset_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        MultiDatasetBatchSampler([3], 2, "random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch samplers"):
        MultiDatasetBatchSampler([3, 4], 2, batch_samplers=[[[0, 1]]])


def test_token_budget_batches() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 129, 5_000)
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=1024, seed=0)
    batches = list(sampler)
    assert len(sampler) == len(batches)
    assert (batch_of_each_row(batches, len(lengths)) >= 0).all()
    padded = [lengths[b].max() * len(b) for b in batches]
    assert max(padded) <= 1024
    assert lengths.sum() / sum(padded) > 0.95  # length bucketing keeps padding low
    sampler.set_epoch(1)
    assert list(sampler) != batches and len(sampler) == len(batches)


def test_token_budget_without_shuffle_is_shortest_first_and_capped() -> None:
    lengths = [5, 1, 3, 2, 8, 1]
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=8, shuffle=False, max_batch_size=2)
    batches = list(sampler)
    assert [max(lengths[i] for i in b) for b in batches] == sorted(max(lengths[i] for i in b) for b in batches)
    assert all(len(b) <= 2 and max(lengths[i] for i in b) * len(b) <= 8 for b in batches)


def test_token_budget_rejects_rows_longer_than_the_budget() -> None:
    with pytest.raises(ValueError, match="row 1 has 300 tokens"):
        TokenBudgetBatchSampler([10, 300], max_tokens=256)
