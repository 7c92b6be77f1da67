"""training/accelerator.py: mixed precision, batch dispatching, and the GradCache mini-batch plan."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from accelerate.utils import DataLoaderConfiguration
from datasets import Dataset

from tests.training.loop_inputs import make_config
from textdml.training.accelerator import check_dispatch, plan_grad_cache, resolve_mixed_precision


class ImageTextModel:
    def embed_images(self, images):  # what makes a model image-text (models.saving.model_kind)
        raise AssertionError("not called")


def test_an_explicit_precision_is_kept_and_auto_is_no_without_bf16_cuda():
    assert resolve_mixed_precision("fp16") == "fp16"
    assert resolve_mixed_precision("auto") == "no"  # this machine has no CUDA device


def test_dispatching_left_to_accelerate_is_turned_off_so_each_process_reads_its_batches():
    accelerator = SimpleNamespace(dataloader_config=DataLoaderConfiguration())
    check_dispatch(accelerator, Dataset.from_dict({"anchor": ["a"]}))
    assert accelerator.dataloader_config.dispatch_batches is False


def test_asked_for_dispatching_of_a_stream_is_refused_with_the_fix():
    stream = Dataset.from_dict({"anchor": ["a"]}).to_iterable_dataset()
    accelerator = SimpleNamespace(dataloader_config=DataLoaderConfiguration(dispatch_batches=True))
    with pytest.raises(ValueError, match=r"dispatch_batches=False"):
        check_dispatch(accelerator, stream)
    check_dispatch(accelerator, Dataset.from_dict({"anchor": ["a"]}))  # a table is fine


def test_a_configured_mini_batch_is_used_as_it_is(tmp_path, tiny_model_dir):
    config = make_config(tiny_model_dir, tmp_path, "training.grad_cache=true", "training.mini_batch_size=3")
    assert plan_grad_cache(config, ImageTextModel(), SimpleNamespace()) == 3


def test_an_image_text_model_needs_a_configured_mini_batch(tmp_path, tiny_model_dir):
    config = make_config(tiny_model_dir, tmp_path, "training.grad_cache=true")
    with pytest.raises(ValueError, match="training.mini_batch_size"):
        plan_grad_cache(config, ImageTextModel(), SimpleNamespace())
