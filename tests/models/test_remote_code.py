"""``model.trust_remote_code: true`` names the files that will run, and the card says they were saved (issue 16)."""

from __future__ import annotations

import json
import logging
import shutil

from datasets import Dataset

from textdml.config import load_run_config
from textdml.models.remote_code import auto_map_files, remote_code_files
from textdml.training.loop import train


def remote_code_model(tiny_model_dir, folder):
    """The tiny BERT as a model with its own code: a config and a model class in .py files."""
    shutil.copytree(tiny_model_dir, folder)
    (folder / "configuration_tiny.py").write_text(
        "from transformers import BertConfig\n\n\nclass TinyConfig(BertConfig):\n    model_type = 'tiny-remote'\n")
    (folder / "modeling_tiny.py").write_text(
        "from transformers import BertModel\n\nfrom .configuration_tiny import TinyConfig\n\n\n"
        "class TinyModel(BertModel):\n    config_class = TinyConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tiny-remote",
                  auto_map={"AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_auto_map_names_the_files():
    config = {"auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModel": "org/code--modeling_x.XModel",
                           "AutoTokenizer": ["tokenization_x.XTokenizer", None]}}
    assert auto_map_files(config) == ["configuration_x.py", "org/code/modeling_x.py", "tokenization_x.py"]


def test_a_model_without_code_needs_no_flag(tiny_model_dir):
    assert remote_code_files(str(tiny_model_dir)) == []


def test_remote_code_is_announced_and_stated_in_the_card(tiny_model_dir, tmp_path, caplog):
    model = remote_code_model(tiny_model_dir, tmp_path / "remote_tiny")
    data = Dataset.from_dict({"anchor": [f"question {i}" for i in range(8)], "positive": [f"answer {i}" for i in range(8)]})
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={model}", "model.trust_remote_code=true",
                                    f"training.output_dir={tmp_path / 'run'}", "training.batch_size=4",
                                    "training.max_steps=1", "training.show_progress_bar=false"])
    with caplog.at_level(logging.WARNING, logger="textdml"):
        result = train(config, train_dataset=data)
    warning = next(r.getMessage() for r in caplog.records if "trust_remote_code" in r.getMessage())
    assert str(model) in warning and "configuration_tiny.py, modeling_tiny.py" in warning
    card = (result.final_model / "README.md").read_text()
    assert "## Custom code" in card and "`modeling_tiny.py`" in card and "trust_remote_code=True" in card
    assert (result.final_model / "modeling_tiny.py").exists()
