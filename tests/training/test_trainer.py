"""``Trainer``: the Python API runs the same loop as ``train(config)``: same weights, checkpoints, resume, card."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from textdml import Embedder, Trainer, TrainingConfig
from textdml.config import load_run_config
from textdml.losses import InfoNCELoss, TripletLoss
from textdml.miners import BatchHardMiner
from textdml.training.loop import train


def pairs(rows: int = 24) -> Dataset:
    return Dataset.from_dict({"question": [f"question number {i}" for i in range(rows)],
                              "answer": [f"the answer is {i} {'long ' * (i % 5)}" for i in range(rows)]})


def args(output_dir, **overrides) -> TrainingConfig:
    settings = {"output_dir": str(output_dir), "batch_size": 8, "learning_rate": 1e-3, "max_steps": 4,
                "show_progress_bar": False, "logging_steps": 1, **overrides}
    return TrainingConfig(**settings)


def weights(output_dir):
    return load_file(str(output_dir / "final" / "model.safetensors"))


def test_trainer_equals_train_config(tiny_model_dir, tmp_path):
    columns = {"anchor": "question", "positive": "answer"}
    Trainer(Embedder.from_pretrained(tiny_model_dir), InfoNCELoss(temperature=0.05), pairs(),
            args=args(tmp_path / "api"), columns=columns).train()
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path / 'yaml'}", "training.batch_size=8",
                                    "training.learning_rate=1e-3", "training.max_steps=4",
                                    "training.show_progress_bar=false", "training.logging_steps=1",
                                    "loss={name: info_nce, temperature: 0.05}",
                                    "train.columns={anchor: question, positive: answer}"])
    train(config, train_dataset=pairs(), embedder=Embedder.from_pretrained(tiny_model_dir))
    api, yaml_run = weights(tmp_path / "api"), weights(tmp_path / "yaml")
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert max((api[k] - base[k]).abs().max().item() for k in base if k in api) > 1e-4
    for key in yaml_run:
        torch.testing.assert_close(api[key], yaml_run[key], rtol=0, atol=0, msg=key)
    card = (tmp_path / "api" / "final" / "README.md").read_text()
    assert "InfoNCELoss" in card and "sentence-transformers" in card
    recorded = json.loads((tmp_path / "api" / "run_config.json").read_text())
    assert recorded["loss"] == {"target": "textdml.losses.info_nce.InfoNCELoss"}


def test_trainer_checkpoints_and_resumes_exactly(tiny_model_dir, tmp_path):
    settings = {"max_steps": 5, "save_steps": 2, "save_total_limit": 5}
    columns = {"anchor": "question", "positive": "answer"}

    def trainer(output_dir):
        return Trainer(Embedder.from_pretrained(tiny_model_dir), InfoNCELoss(), pairs(),
                       args=args(output_dir, **settings), columns=columns)

    trainer(tmp_path / "unbroken").train()
    assert sorted(p.name for p in (tmp_path / "unbroken" / "checkpoints").iterdir()) == ["checkpoint-2",
                                                                                          "checkpoint-4"]
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "unbroken" / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    result = trainer(resumed).train(resume_from_checkpoint="latest")
    assert result.global_step == 5
    expected, actual = weights(tmp_path / "unbroken"), weights(resumed)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_trainer_with_a_miner_eval_dataset_and_best_model(tiny_model_dir, tmp_path):
    labelled = Dataset.from_dict({"anchor": [f"text {i} in group {i % 4}" for i in range(32)],
                                  "label": [i % 4 for i in range(32)]})
    trainer = Trainer(Embedder.from_pretrained(tiny_model_dir), TripletLoss(margin=0.2), labelled,
                      miner=BatchHardMiner(), eval_dataset=labelled.select(range(16)),
                      args=args(tmp_path, max_steps=2, eval_steps=1, sampler="m_per_class", m_per_class=2))
    result = trainer.train()
    evaluations = [r for r in result.metrics if "eval_recall@1" in r]
    assert [r["step"] for r in evaluations] == [1, 2]
    assert result.best_model is not None and (result.best_model / "modules.json").exists()


def test_trainer_rejects_bad_arguments(tiny_embedder):
    with pytest.raises(ValueError, match="datasets.Dataset"):
        Trainer(tiny_embedder, InfoNCELoss(), [{"anchor": "a", "positive": "b"}])
    with pytest.raises(ValueError, match="TrainingConfig"):
        Trainer(tiny_embedder, InfoNCELoss(), pairs(), args={"max_steps": 2})
    with pytest.raises(ValueError, match="no column for role 'anchor'"):
        Trainer(tiny_embedder, InfoNCELoss(), pairs(), args=TrainingConfig(max_steps=1)).train()


def test_a_failing_trainer_run_leaves_the_run_it_would_replace(tiny_model_dir, tmp_path):
    """Issue 20, through the Python API: overwrite_output_dir replaces the old run only once the new one saved."""
    from tests.cli_checks import AlwaysNanLoss
    from textdml.training.run_folder import PREVIOUS

    columns = {"anchor": "question", "positive": "answer"}
    Trainer(Embedder.from_pretrained(tiny_model_dir), InfoNCELoss(), pairs(), args=args(tmp_path, max_steps=2),
            columns=columns).train()
    before = weights(tmp_path)
    again = {"max_steps": 2, "learning_rate": 5e-4, "overwrite_output_dir": True, "eval_steps": 1}
    failing = [  # a metric textdml's evaluator does not compute fails before anything moves; the others fail later
        ({"eval_dataset": pairs(8)}, {"metric_for_best_model": "ndcg@11"}, ValueError, "not among the evaluation"),
        ({"evaluator": lambda model: {"score": 1.0}}, {"metric_for_best_model": "ndcg@10"}, KeyError, "'score'"),
        ({"loss": AlwaysNanLoss()}, {"preflight": False}, ValueError, "the loss is nan at step 1"),
    ]
    for trainer_kwargs, settings, error, match in failing:
        kwargs = {"loss": InfoNCELoss(), "columns": columns, **trainer_kwargs}
        with pytest.raises(error, match=match):
            Trainer(Embedder.from_pretrained(tiny_model_dir), train_dataset=pairs(),
                    args=args(tmp_path, **again, **settings), **kwargs).train()
        assert not (tmp_path / PREVIOUS).exists()
        for key, value in weights(tmp_path).items():
            assert torch.equal(value, before[key]), key


def test_a_trainer_on_another_runs_folder_fails_before_building_the_run(tiny_model_dir, tmp_path, monkeypatch):
    """As ``train()``: the folder is checked before the data is read or the loss built."""
    import textdml.training.trainer as trainer

    columns = {"anchor": "question", "positive": "answer"}
    Trainer(Embedder.from_pretrained(tiny_model_dir), InfoNCELoss(), pairs(), args=args(tmp_path, max_steps=1),
            columns=columns).train()
    built = []
    monkeypatch.setattr(trainer, "build_run", lambda *a, **k: built.append(1))
    with pytest.raises(Exception, match="overwrite_output_dir") as raised:
        Trainer(Embedder.from_pretrained(tiny_model_dir), InfoNCELoss(), pairs(),
                args=args(tmp_path, max_steps=1, learning_rate=5e-4), columns=columns).train()
    assert built == [] and str(tmp_path) in str(raised.value)
