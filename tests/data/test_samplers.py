from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from textdml.data import samplers
from textdml.data.samplers import MPerClassSampler, m_per_class_stream

# 10 classes of uneven sizes, one of them smaller than m.
LABELS = np.repeat(np.arange(10), [1, 4, 5, 6, 7, 8, 9, 10, 11, 12])


def class_counts(batch, labels=LABELS) -> Counter:
    return Counter(labels[batch].tolist())


@pytest.mark.parametrize("m,batch_size", [(2, 8), (4, 16), (3, 9)])
def test_every_batch_has_m_rows_of_distinct_classes(m, batch_size):
    sampler = MPerClassSampler(LABELS, m=m, batch_size=batch_size, length_before_new_iter=400)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 400 // batch_size
    for batch in batches:
        assert len(batch) == batch_size
        assert sorted(class_counts(batch).values()) == [m] * (batch_size // m)


def test_rows_of_a_large_class_do_not_repeat_before_all_are_seen():
    sampler = MPerClassSampler(LABELS, m=4, batch_size=8, length_before_new_iter=800)
    seen: dict[int, list[int]] = {}
    for batch in sampler:
        for row in batch:
            seen.setdefault(int(LABELS[row]), []).append(row)
    for label, rows in seen.items():
        size = int((LABELS == label).sum())
        if size >= 4:
            first_pass = rows[: size - size % 4]
            assert len(set(first_pass)) == len(first_pass)


def test_small_class_is_sampled_with_replacement():
    sampler = MPerClassSampler(LABELS, m=3, batch_size=6, length_before_new_iter=600)
    only_row = int(np.flatnonzero(LABELS == 0)[0])
    batches_with_class_0 = [b for b in sampler if only_row in b]
    assert batches_with_class_0
    assert all(b.count(only_row) == 3 for b in batches_with_class_0)


def test_every_class_appears():
    sampler = MPerClassSampler(LABELS, m=2, batch_size=4, length_before_new_iter=200)
    assert set(LABELS[np.concatenate(list(sampler))].tolist()) == set(range(10))


def test_same_seed_and_epoch_give_same_batches_and_epochs_differ():
    first = MPerClassSampler(LABELS, m=2, batch_size=8, seed=3)
    second = MPerClassSampler(LABELS, m=2, batch_size=8, seed=3)
    assert list(first) == list(second)
    epoch_0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch_0
    first.set_epoch(0)
    assert list(first) == epoch_0
    assert list(MPerClassSampler(LABELS, m=2, batch_size=8, seed=4)) != epoch_0


def test_ranks_get_disjoint_shares_of_the_same_global_batches():
    kwargs = {"m": 2, "batch_size": 8, "length_before_new_iter": 160, "num_replicas": 2}
    rank_0, rank_1 = (MPerClassSampler(LABELS, rank=rank, **kwargs) for rank in (0, 1))
    assert len(rank_0) == len(rank_1) == 10
    global_batches = rank_0.global_batches().tolist()
    assert list(rank_0) == global_batches[0::2] and list(rank_1) == global_batches[1::2]
    assert list(rank_0) != list(rank_1)


def test_reads_rank_from_torch_distributed(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 4)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 3)
    sampler = MPerClassSampler(LABELS, m=2, batch_size=4, length_before_new_iter=160)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (4, 3, 10)
    assert list(sampler) == sampler.global_batches().tolist()[3::4]


def test_works_as_a_dataloader_batch_sampler():
    dataset = TensorDataset(torch.arange(len(LABELS)), torch.as_tensor(LABELS))
    loader = DataLoader(dataset, batch_sampler=MPerClassSampler(torch.as_tensor(LABELS), m=2, batch_size=6))
    rows, labels = next(iter(loader))
    assert rows.shape == (6,) and sorted(Counter(labels.tolist()).values()) == [2, 2, 2]


def test_string_labels():
    labels = ["cat", "dog", "cat", "emu", "dog", "emu"]
    batch = next(iter(MPerClassSampler(labels, m=2, batch_size=4)))
    assert sorted(Counter(labels[i] for i in batch).values()) == [2, 2]


def test_large_label_sets_are_handled_vectorised():
    labels = np.random.default_rng(0).integers(0, 20_000, size=200_000)
    sampler = MPerClassSampler(labels, m=4, batch_size=256)
    assert len(sampler) == 200_000 // 256
    assert sum(len(b) for b in sampler) == len(sampler) * 256


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"m": 3, "batch_size": 8}, "multiple of m"),
        ({"m": 2, "batch_size": 22}, "only 10"),
        ({"m": 2, "batch_size": 8, "length_before_new_iter": 7}, "at least one batch"),
        ({"m": 2, "batch_size": 8, "num_replicas": 2, "rank": 2}, "rank"),
    ],
)
def test_invalid_settings_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MPerClassSampler(LABELS, **kwargs)


def counted_stream(labels, consumed: list[int]):
    for i, label in enumerate(labels):
        consumed[0] = i + 1
        yield {"id": i, "label": int(label)}


def test_stream_batches_have_m_per_class_and_every_row_once():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(6), 20))
    batches = list(m_per_class_stream(counted_stream(labels, [0]), "label", m=4, batch_size=12, buffer_size=1000))
    ids = [row["id"] for batch in batches for row in batch]
    assert sorted(ids) == list(range(len(labels)))
    full = [b for b in batches if len(b) == 12]
    assert len(full) >= len(batches) - 2
    for batch in full[:-1]:
        assert sorted(Counter(row["label"] for row in batch).values()) == [4, 4, 4]


def test_stream_buffer_stays_bounded_with_rare_labels():
    labels = np.arange(500)  # every label once: no class ever fills up
    consumed = [0]
    yielded = 0
    for batch in m_per_class_stream(counted_stream(labels, consumed), "label", m=2, batch_size=8, buffer_size=32):
        yielded += len(batch)
        assert consumed[0] - yielded < 32
    assert yielded == 500


def test_stream_is_deterministic_per_seed():
    labels = np.random.default_rng(1).integers(0, 8, size=200)

    def run(seed):
        stream = m_per_class_stream(counted_stream(labels, [0]), "label", m=2, batch_size=8, buffer_size=64, seed=seed)
        return [[row["id"] for row in batch] for batch in stream]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_stream_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiple of m"):
        next(m_per_class_stream(iter([]), "label", m=3, batch_size=8))
    with pytest.raises(ValueError, match="buffer_size"):
        next(m_per_class_stream(iter([]), "label", m=2, batch_size=8, buffer_size=4))


def test_occurrence_rank():
    assert samplers.occurrence_rank(np.array([3, 1, 3, 3, 1, 0])).tolist() == [0, 0, 1, 2, 1, 0]
