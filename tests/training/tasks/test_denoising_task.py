"""TSDAE through the loop: noisy inputs from the collator, a tied decoder trained, only the model saved."""

from __future__ import annotations

import torch
from datasets import Dataset

from textdml.config import load_run_config
from textdml.data.collator import RoleCollator
from textdml.data.roles import resolve_roles
from textdml.models import Embedder
from textdml.training.loop import train


def test_the_collator_damages_the_inputs_and_keeps_the_targets(tiny_embedder):
    collator = RoleCollator(tiny_embedder, resolve_roles(["anchor"], "tsdae", ("texts",)))
    collator.deletion_ratio = 0.6
    rows = [{"anchor": "one two three four five six seven eight"}, {"anchor": "alpha beta gamma delta"}]
    batch = collator(rows)
    targets = tiny_embedder.tokenize([r["anchor"] for r in rows])
    torch.testing.assert_close(batch["targets"]["input_ids"], targets["input_ids"])
    noisy = batch["inputs"].blocks[0]["attention_mask"].sum(1)
    assert (noisy < targets["attention_mask"].sum(1)).all()


def test_two_training_steps_save_only_the_encoder(tiny_model_dir, tmp_path):
    dataset = Dataset.from_list([{"anchor": f"an unlabelled sentence about topic {i} and more words"}
                                 for i in range(16)])
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8",
                                    "training.max_steps=2", "training.show_progress_bar=false",
                                    "training.learning_rate=1e-3", "loss.name=denoising_auto_encoder"])
    result = train(config, train_dataset=dataset)
    assert result.global_step == 2 and all(r["loss"] > 0 for r in result.metrics)
    saved = Embedder.from_pretrained(result.final_model)
    original = Embedder.from_pretrained(tiny_model_dir)
    assert saved.state_dict().keys() == original.state_dict().keys()
    assert not torch.equal(saved.transformer.embeddings.word_embeddings.weight,
                           original.transformer.embeddings.word_embeddings.weight)  # the encoder was trained
