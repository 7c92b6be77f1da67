"""Adapters on either tower of a dual encoder: only adapter weights train there; saves are merged."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("open_clip")

from tests.models.test_dual_encoder import TEXTS, images, tiny_open_clip_arch  # noqa: E402,F401
from textdml.config import AdapterConfig  # noqa: E402
from textdml.models.adapters import add_adapters, has_adapters, save_model  # noqa: E402
from textdml.models.dual_encoder import DualEncoder, create_dual_encoder  # noqa: E402


def trainable_names(model, prefix):
    return {n for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefix)}


@pytest.mark.parametrize("tower", ["text", "image", "both"])
def test_adapters_on_one_or_both_towers_save_merged(tiny_open_clip_arch, tmp_path, tower):  # noqa: F811
    torch.manual_seed(0)
    model = create_dual_encoder({"kind": "open_clip", "arch": tiny_open_clip_arch, "pretrained": None})
    add_adapters(model, AdapterConfig(r=2, alpha=4, dropout=0.0, tower=tower))
    for side in ("image", "text"):
        names = trainable_names(model, f"{side}_tower.")
        if side == tower or tower == "both":
            # every linear layer of the tower's blocks got an adapter, and nothing else of the tower trains
            assert names and all("lora_" in n for n in names), side
            assert any("c_fc" in n for n in names) and not any("out_proj" in n for n in names)
        else:
            assert names and not any("lora_" in n for n in names), side  # untouched: trains as before
    assert model.logit_scale.requires_grad
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    model.eval()
    with torch.no_grad():
        expected_text = model.encode(TEXTS, convert_to="torch")
        expected_images = model.encode_images(images(), convert_to="torch")

    folder = save_model(model, tmp_path / "merged")
    assert has_adapters(model)  # saving merged a copy; the model in training keeps its adapters
    reloaded = DualEncoder.from_pretrained(folder)
    assert not has_adapters(reloaded)
    torch.testing.assert_close(reloaded.encode(TEXTS, convert_to="torch"), expected_text, atol=1e-5, rtol=0)
    torch.testing.assert_close(reloaded.encode_images(images(), convert_to="torch"), expected_images, atol=1e-5, rtol=0)


def test_dual_encoder_adapter_errors(tiny_open_clip_arch, tmp_path):  # noqa: F811
    model = create_dual_encoder({"kind": "open_clip", "arch": tiny_open_clip_arch, "pretrained": None})
    with pytest.raises(ValueError, match="needs model.lora.target_modules and model.lora.feedforward_modules"):
        add_adapters(model, AdapterConfig(method="ia3", tower="image"))
    with pytest.raises(ValueError, match="no adapters added from a model config"):
        save_model(model, tmp_path / "x", keep_adapter=True)


def test_dual_adapter_save_reloads_and_merges(tiny_open_clip_arch, tmp_path):  # noqa: F811
    from textdml.config import ModelConfig
    from textdml.models.adapters import merge_adapter
    from textdml.models.loading import load_model
    from textdml.training.build import create_model

    torch.manual_seed(0)
    pretrained = create_dual_encoder({"kind": "open_clip", "arch": tiny_open_clip_arch}).save_pretrained(tmp_path / "base")
    dual = {"kind": "open_clip", "arch": tiny_open_clip_arch, "pretrained": str(pretrained / "open_clip_model.safetensors"),
            "projection_dim": None}
    model = create_model(ModelConfig(kind="dual", dual=dual, lora=AdapterConfig(r=2, alpha=4, tower="image")))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
            if name == "logit_scale":
                param.fill_(3.0)
    model.eval()
    with torch.no_grad():
        expected = model.encode_images(images(), convert_to="torch"), model.encode(TEXTS, convert_to="torch")

    folder = save_model(model, tmp_path / "adapter", keep_adapter=True)
    saved = sorted(p.name for p in folder.iterdir())
    assert saved == ["adapter_model.safetensors", "textdml_dual_adapter.json"]
    # the image adapter and the text tower (which trains fully here) are kept; the frozen image base is not
    assert (folder / "adapter_model.safetensors").stat().st_size < (pretrained / "open_clip_model.safetensors").stat().st_size
    for loaded in (load_model(folder), DualEncoder.from_pretrained(merge_adapter(folder, tmp_path / "merged"))):
        loaded.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded.encode_images(images(), convert_to="torch"), expected[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(loaded.encode(TEXTS, convert_to="torch"), expected[1], atol=1e-5, rtol=0)
        assert float(loaded.logit_scale.detach()) == 3.0

    random_base = create_model(ModelConfig(kind="dual", dual={"kind": "open_clip", "arch": tiny_open_clip_arch},
                                           lora=AdapterConfig(r=2)))
    with pytest.raises(ValueError, match="starts from random weights"):
        save_model(random_base, tmp_path / "x", keep_adapter=True)
