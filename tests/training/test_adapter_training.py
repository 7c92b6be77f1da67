from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

from tests.models.test_dual_encoder import tiny_open_clip_arch  # noqa: F401  (a fixture)
from tests.training.loop_inputs import pairs_dataset
from textdml.cli import main
from textdml.config import load_run_config
from textdml.models import Embedder
from textdml.training.loop import train

TEXTS = ["question number 3", "the answer is 5"]


def adapter_config(model_dir, output_dir, *overrides):
    return load_run_config(None, ["train.path=in-memory", f"model.name_or_path={model_dir}",
                                  f"training.output_dir={output_dir}", "training.batch_size=8",
                                  "training.learning_rate=5e-3", "training.show_progress_bar=false",
                                  "training.report_to=none", "model.lora.r=4", "model.lora.dropout=0.1",
                                  "model.lora.target_modules=[query, value]", "training.save_adapter=true",
                                  *overrides])


def test_adapter_run_saves_an_adapter_that_loads_and_merges(tiny_model_dir, tmp_path, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="textdml"):
        result = train(adapter_config(tiny_model_dir, tmp_path / "run", "training.max_steps=3"),
                       train_dataset=pairs_dataset())
    assert "trainable parameters: 1,024 of" in caplog.text and "peak process memory (RSS)" in caplog.text
    final = result.final_model
    assert (final / "adapter_model.safetensors").exists() and not (final / "model.safetensors").exists()
    assert set(load_file(str(final / "adapter_model.safetensors"))) == {
        f"base_model.model.encoder.layer.{i}.attention.self.{m}.lora_{ab}.weight"
        for i in range(2) for m in ("query", "value") for ab in "AB"}
    vectors = Embedder.from_pretrained(final).encode(TEXTS)
    np.testing.assert_allclose(SentenceTransformer(str(final), device="cpu").encode(TEXTS), vectors, atol=1e-5)
    assert not np.allclose(Embedder.from_pretrained(tiny_model_dir).encode(TEXTS), vectors, atol=1e-4)  # it trained

    assert main(["merge", str(final), str(tmp_path / "merged")]) == 0
    assert "merged model written to" in capsys.readouterr().out
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "they are merged into the weights saved here" in card and "holds a PEFT adapter" not in card
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "merged"), device="cpu").encode(TEXTS), vectors,
                               atol=1e-5)


def test_interrupted_adapter_run_resumes_to_the_same_adapter(tiny_model_dir, tmp_path):
    # 3 batches per epoch, 5 steps, checkpoint at step 2 (mid-epoch); dropout on the adapters is on.
    overrides = ("training.max_steps=5", "training.save_steps=2", "training.save_total_limit=5")
    unbroken = tmp_path / "unbroken"
    train(adapter_config(tiny_model_dir, unbroken, *overrides), train_dataset=pairs_dataset())
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(unbroken / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    train(adapter_config(tiny_model_dir, resumed, *overrides, "training.resume_from_checkpoint=latest"),
          train_dataset=pairs_dataset())
    expected = load_file(str(unbroken / "final" / "adapter_model.safetensors"))
    actual = load_file(str(resumed / "final" / "adapter_model.safetensors"))
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_merge_of_an_adapter_whose_base_is_gone(tiny_model_dir, tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    result = train(adapter_config(base, tmp_path / "run", "training.max_steps=1"), train_dataset=pairs_dataset())
    shutil.rmtree(base)
    assert main(["merge", str(result.final_model), str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err
    assert "textdml merge: error:" in err and f"base model {str(base)!r}" in err


def test_save_adapter_needs_a_text_model():
    with pytest.raises(ValueError, match="model.lora is not set"):
        load_run_config(None, ["train.path=x", "training.save_adapter=true"])


def test_image_text_adapter_run_end_to_end(tiny_open_clip_arch, tmp_path):  # noqa: F811
    from datasets import Dataset

    from tests.fakes_vision import write_colour_images
    from textdml.models.dual_encoder import create_dual_encoder
    from textdml.models.loading import load_model

    base = create_dual_encoder({"kind": "open_clip", "arch": tiny_open_clip_arch}).save_pretrained(tmp_path / "base")
    rows = write_colour_images(tmp_path / "images", per_colour=4)
    data = Dataset.from_list([{"image": r["image"], "text": r["text"]} for r in rows])
    config = load_run_config(None, [
        "train.path=in-memory", "model.kind=dual", "model.lora={r: 2, tower: both}", "training.save_adapter=true",
        f"model.dual={{kind: open_clip, arch: {tiny_open_clip_arch}, pretrained: {base / 'open_clip_model.safetensors'}}}",
        "loss={name: clip}", f"training.output_dir={tmp_path / 'run'}", "training.batch_size=4", "training.max_steps=2",
        "training.show_progress_bar=false", "training.report_to=none"])
    final = train(config, train_dataset=data).final_model
    assert sorted(p.name for p in final.iterdir()) == ["README.md", "adapter_model.safetensors",
                                                      "textdml_dual_adapter.json"]
    assert load_model(final).encode(["a red square"]).shape == (1, 16)
    assert "**LoRA adapters** on both towers" in (final / "README.md").read_text()
