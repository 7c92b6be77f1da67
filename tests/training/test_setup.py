"""``build_run``: the one place that builds a run, for ``train``, ``Trainer`` and the preflight alike."""

from __future__ import annotations

import torch

from tests.training.loop_inputs import make_config, pairs_dataset
from textdml import Embedder, Trainer, TrainingConfig
from textdml.data.pipeline import DEFAULT_INPUT_KINDS
from textdml.losses import TripletLoss
from textdml.miners import BatchHardMiner
from textdml.training.setup import build_run, loss_input_kinds


def test_build_run_builds_every_part_from_the_config(tiny_model_dir, tmp_path):
    config = make_config(tiny_model_dir, tmp_path / "run", "loss.name=triplet", "miner.name=batch_hard")
    parts = build_run(config, dataset=pairs_dataset())
    assert isinstance(parts.model, Embedder) and isinstance(parts.loss, TripletLoss)
    assert isinstance(parts.miner, BatchHardMiner)
    assert parts.task.embedder is parts.model and parts.task.loss is parts.loss and parts.task.miner is parts.miner
    assert parts.data.input_kinds == loss_input_kinds(config.loss) == tuple(TripletLoss.input_kinds)
    assert len(parts.dataloader) == 3 and parts.sampler is not None  # 24 rows, batches of 8
    assert build_run(config, dataset=pairs_dataset(), model=parts.model, loader=False).dataloader is None


def test_build_run_uses_given_objects_as_they_are(tiny_embedder, tmp_path):
    config = make_config("unused", tmp_path / "run")
    loss, miner = TripletLoss(margin=0.3), BatchHardMiner()
    parts = build_run(config, dataset=pairs_dataset(), model=tiny_embedder, loss=loss, miner=miner,
                      evaluator=len, loader=False)
    assert (parts.model, parts.loss, parts.miner, parts.evaluator) == (tiny_embedder, loss, miner, len)
    assert parts.data.input_kinds == tuple(TripletLoss.input_kinds) and parts.data.loss_name == "TripletLoss"


def test_a_given_loss_without_input_kinds_takes_every_text_kind(tiny_embedder, tmp_path):
    class PlainLoss(torch.nn.Module):  # any module with the loss signature, as Trainer takes it
        def forward(self, embeddings, labels=None, **kwargs):
            return embeddings.sum()

    parts = build_run(make_config("unused", tmp_path / "run"), dataset=pairs_dataset(), model=tiny_embedder,
                      loss=PlainLoss(), loader=False)
    assert parts.data.input_kinds == DEFAULT_INPUT_KINDS and parts.data.loss_name == "PlainLoss"


def test_train_trainer_and_preflight_build_the_same_parts(tiny_model_dir, tmp_path, monkeypatch):
    import textdml.training.setup as setup
    import textdml.training.trainer as trainer
    from textdml.diagnostics.preflight import run_preflight

    built = []

    def recording_build_run(config, **kwargs):
        parts = build_run(config, **kwargs)
        built.append(parts)
        return parts

    monkeypatch.setattr(setup, "build_run", recording_build_run)  # the preflight's
    monkeypatch.setattr(trainer, "build_run", recording_build_run)  # train()'s and Trainer's
    config = make_config(tiny_model_dir, tmp_path / "yaml", "loss.name=triplet", "training.max_steps=1",
                         "training.preflight=false")
    trainer.train(config, train_dataset=pairs_dataset())
    Trainer(Embedder.from_pretrained(tiny_model_dir), TripletLoss(), pairs_dataset(),
            args=TrainingConfig(output_dir=str(tmp_path / "api"), batch_size=8, max_steps=1,
                                show_progress_bar=False, preflight=False)).train()
    rows = tmp_path / "pairs.jsonl"
    pairs_dataset().to_json(str(rows))
    run_preflight(make_config(tiny_model_dir, tmp_path / "check", "loss.name=triplet", f"train.path={rows}"),
                  brief=True)
    assert len(built) == 3
    assert {parts.data.input_kinds for parts in built} == {tuple(TripletLoss.input_kinds)}
    assert {parts.data.roles.kind for parts in built} == {"pairs"}
    assert {type(parts.loss) for parts in built} == {TripletLoss}
    assert [parts.dataloader is not None for parts in built] == [True, True, False]  # the preflight draws its own
