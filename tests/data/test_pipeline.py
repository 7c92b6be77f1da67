"""The data pipeline: a config and a table to roles, collator, sampler and loader."""

from __future__ import annotations

import pytest
from datasets import Dataset

from tests.training.loop_inputs import make_config, pairs_dataset
from textdml.data.collator import RoleCollator
from textdml.data.pipeline import (
    DEFAULT_INPUT_KINDS,
    create_dataloader,
    input_kinds,
    prepare_data,
    prepare_training_data,
    rebuild,
)
from textdml.losses import InfoNCELoss, TripletLoss


def triplets_table(rows: int = 16) -> Dataset:
    return Dataset.from_dict({"anchor": [f"question {i}" for i in range(rows)],
                              "positive": [f"answer {i}" for i in range(rows)],
                              "negative_1": [f"mined negative {i}" for i in range(rows)]})


def test_rebuild_reads_a_remined_table_for_the_same_loss(tiny_embedder, tmp_path):
    config = make_config("unused", tmp_path)
    data = prepare_training_data(config, tiny_embedder, input_kinds(InfoNCELoss), "info_nce", pairs_dataset())
    assert data.roles.kind == "pairs" and data.loss_name == "info_nce"
    mined = rebuild(data, triplets_table(), config, tiny_embedder)
    assert mined.roles.kind == "triplets" and tuple(mined.roles.negatives) == ("negative_1",)
    assert (mined.input_kinds, mined.loss_name) == (data.input_kinds, data.loss_name)
    assert mined.dataset.num_rows == 16 and mined.collator is not data.collator


def test_rebuild_refuses_a_table_the_loss_cannot_take(tiny_embedder, tmp_path):
    config = make_config("unused", tmp_path)
    data = prepare_training_data(config, tiny_embedder, ("pairs",), "some_pairs_loss", pairs_dataset())
    with pytest.raises(ValueError, match="some_pairs_loss"):
        rebuild(data, Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}), config, tiny_embedder)


def test_input_kinds_of_a_loss_class_default_to_every_text_kind():
    class PlainLoss:
        pass

    assert input_kinds(PlainLoss) == DEFAULT_INPUT_KINDS == ("pairs", "triplets", "scored_pairs", "labelled")
    assert input_kinds(TripletLoss) == tuple(TripletLoss.input_kinds)


def test_prepare_data_builds_the_text_collator_for_a_text_model(tiny_embedder, tmp_path):
    data = prepare_data(make_config("unused", tmp_path), tiny_embedder, DEFAULT_INPUT_KINDS, "info_nce",
                        pairs_dataset())
    assert isinstance(data.collator, RoleCollator) and data.label_ids is None and data.set_lengths is None


def test_the_loader_drops_the_last_partial_batch_and_refuses_less_than_one(tiny_embedder, tmp_path):
    config = make_config("unused", tmp_path)  # batch_size=8
    data = prepare_data(config, tiny_embedder, DEFAULT_INPUT_KINDS, "info_nce", pairs_dataset(20))
    loader, sampler = create_dataloader(data, config, tiny_embedder)
    assert len(loader) == 2 and sampler is not None
    few = prepare_data(config, tiny_embedder, DEFAULT_INPUT_KINDS, "info_nce", pairs_dataset(5))
    with pytest.raises(ValueError, match="fewer than one batch of 8"):
        create_dataloader(few, config, tiny_embedder)


def test_the_loops_old_names_are_the_pipelines():
    import textdml.data.pipeline as pipeline
    import textdml.training.loop as loop

    for name in ("TrainingData", "prepare_training_data", "prepare_image_data", "create_batch_sampler",
                 "create_dataloader", "resolve_train_set", "load_train_set", "to_canonical_columns",
                 "row_token_lengths"):
        assert getattr(loop, name) is getattr(pipeline, name)
