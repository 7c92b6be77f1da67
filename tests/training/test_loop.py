from __future__ import annotations

import json
import shutil

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from tests.training.loop_inputs import make_config, pairs_dataset
from textdml.config import load_run_config
from textdml.losses.base import BaseLoss
from textdml.registry import LOSSES
from textdml.training.loop import NonFiniteLossError, train


def final_weights(output_dir):
    return load_file(str(output_dir / "final" / "model.safetensors"))


def test_trains_saves_and_logs(tiny_model_dir, tmp_path):
    config = make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=4")
    result = train(config, train_dataset=pairs_dataset())
    assert result.global_step == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all("examples_per_s" in r for r in records)
    assert (result.final_model / "modules.json").exists() and (result.final_model / "README.md").exists()


def test_resume_ends_with_the_same_weights(tiny_model_dir, tmp_path):
    # 3 batches per epoch, 7 steps: the checkpoint at step 4 sits mid-epoch 1; dropout is on.
    overrides = ("training.max_steps=7", "training.save_steps=4", "training.save_total_limit=5")
    unbroken = tmp_path / "unbroken"
    train(make_config(tiny_model_dir, unbroken, *overrides), train_dataset=pairs_dataset())

    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(unbroken / "checkpoints" / "checkpoint-4", resumed / "checkpoints" / "checkpoint-4")
    train(make_config(tiny_model_dir, resumed, *overrides, "training.resume_from_checkpoint=latest"),
          train_dataset=pairs_dataset())
    expected, actual = final_weights(unbroken), final_weights(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_gradient_accumulation_runs_and_counts_optimizer_steps(tiny_model_dir, tmp_path):
    config = make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=2",
                         "training.gradient_accumulation_steps=2")
    assert train(config, train_dataset=pairs_dataset()).global_step == 2


@LOSSES.register("nan_after_two_calls")
class NanAfterTwoCallsLoss(BaseLoss):
    """Test-only loss: finite twice, then NaN."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels, same_set, indices):
        self.calls += 1
        value = (embeddings @ ref_embeddings.T).mean()
        return value * float("nan") if self.calls > 2 else value


def test_nan_loss_stops_with_the_step_and_keeps_checkpoints(tiny_model_dir, tmp_path):
    config = make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=6", "training.save_steps=2",
                         "loss.name=nan_after_two_calls")
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        train(config, train_dataset=pairs_dataset())
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2"] and not (tmp_path / "run" / "final").exists()


class InterruptingDataset(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt (as Ctrl-C would) when row ``stop_at`` is read the first time."""

    def __init__(self, data: Dataset, stop_at: int):
        self.data, self.stop_at, self.fired = data, stop_at, False
        self.column_names, self.features = data.column_names, data.features

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        if i == self.stop_at and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return self.data[i]


def test_ctrl_c_saves_a_checkpoint_that_resumes(tiny_model_dir, tmp_path, monkeypatch):
    import textdml.data.pipeline as pipeline

    data = pairs_dataset()
    monkeypatch.setattr(pipeline, "SeededShuffleSampler", lambda length, seed: range(length))  # known order
    interrupting = InterruptingDataset(data, stop_at=20)  # inside the third batch
    # No preflight: its sample would read the row that raises the interrupt.
    config = make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=5", "training.preflight=false")
    monkeypatch.setattr(pipeline, "check_text_columns", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        train(config, train_dataset=interrupting)
    # Accelerate's loader reads one batch ahead, so the interrupt lands after step 1 or 2.
    (checkpoint,) = (tmp_path / "run" / "checkpoints").iterdir()
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] in (1, 2) and state["batches_in_epoch"] == state["global_step"]
    resumed = make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=5",
                          "training.resume_from_checkpoint=latest")
    assert train(resumed, train_dataset=interrupting).global_step == 5


def test_missing_column_fails_before_training(tiny_model_dir, tmp_path):
    data = Dataset.from_dict({"question": ["a", "b"], "answer": ["c", "d"]})
    with pytest.raises(ValueError, match="no column for role 'anchor'"):
        train(make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=1"), train_dataset=data)
    assert not (tmp_path / "run").exists()


def test_too_few_rows_for_a_batch(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=1"), train_dataset=pairs_dataset(3))


@pytest.mark.parametrize(
    "overrides",
    [
        ("training.sampler=no_duplicates",),
        ("training.grad_cache=true", "training.mini_batch_size=3"),
        ("training.grad_cache=true",),  # mini-batch from the memory planner
        ("training.max_tokens_per_batch=64",),
        ("training.bucket_rows=null",),
    ],
    ids=["no_duplicates", "grad_cache", "grad_cache_planned", "token_budget", "no_buckets"],
)
def test_speed_and_scale_options_train(tiny_model_dir, tmp_path, overrides):
    config = make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=3", *overrides)
    result = train(config, train_dataset=pairs_dataset())
    assert result.global_step == 3 and (result.final_model / "model.safetensors").exists()


def test_several_train_sets_one_per_batch(tiny_model_dir, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    pairs_dataset(16).to_json(str(first))
    renamed = pairs_dataset(8).rename_columns({"anchor": "query", "positive": "doc"})
    renamed.to_json(str(second))
    config = make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=3",
                         f"train=[{{path: {first}}}, {{path: {second}, columns: {{anchor: query, positive: doc}}}}]",
                         "training.multi_dataset_strategy=round_robin")
    assert train(config).global_step == 3


def test_grad_cache_and_accumulation_do_not_mix():
    from textdml.config import ConfigError

    with pytest.raises(ConfigError, match="replaces gradient accumulation"):
        load_run_config(None, ["train.path=x", "training.grad_cache=true", "training.gradient_accumulation_steps=2"])


def test_parametric_loss_parameters_are_checkpointed_and_resume(tiny_model_dir, tmp_path):
    labelled = Dataset.from_dict({"anchor": [f"definition {i} of class {i % 4}" for i in range(32)],
                                  "label": [f"class-{i % 4}" for i in range(32)]})
    overrides = ("training.max_steps=4", "training.save_steps=2", "training.save_total_limit=5",
                 "training.sampler=m_per_class", "training.m_per_class=2", "loss.name=proxy_anchor", "loss.lr=0.01")
    train(make_config(tiny_model_dir, tmp_path / "a", *overrides), train_dataset=labelled)
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "checkpoint-2", tmp_path / "b" / "checkpoints" / "checkpoint-2")
    train(make_config(tiny_model_dir, tmp_path / "b", *overrides, "training.resume_from_checkpoint=latest"),
          train_dataset=labelled)
    unbroken, resumed = (load_file(str(tmp_path / run / "checkpoints" / "checkpoint-4" / "model.safetensors"))
                         for run in ("a", "b"))
    proxies = [key for key in unbroken if key.startswith("loss.")]
    assert proxies, "the loss's own parameters are in the checkpoint"
    start = load_file(str(tmp_path / "a" / "checkpoints" / "checkpoint-2" / "model.safetensors"))
    assert not torch.equal(unbroken[proxies[0]], start[proxies[0]])  # they were trained
    for key in unbroken:
        torch.testing.assert_close(resumed[key], unbroken[key], rtol=0, atol=1e-6, msg=key)
