"""``model.trust_remote_code: true`` names the files that will run, and the card says they were saved (issue 16);
every path that loads a model or a dotted target warns with the same helper (issue 20)."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import pytest
from datasets import Dataset

from textdml.config import load_run_config
from textdml.models.remote_code import auto_map_files, remote_code_files
from textdml.registry import import_component_class
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


def code_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "trust it as you would a program you install" in r.getMessage()]


@pytest.mark.parametrize("path", ["Embedder.from_pretrained", "embedder tower"])
def test_every_model_loading_path_announces_remote_code(tiny_model_dir, tmp_path, caplog, path):
    from textdml.models import Embedder
    from textdml.models.dual_encoder import create_tower

    model = remote_code_model(tiny_model_dir, tmp_path / "remote_tiny")
    with caplog.at_level(logging.WARNING, logger="textdml"):
        if path == "Embedder.from_pretrained":
            Embedder.from_pretrained(model, trust_remote_code=True)
        else:
            create_tower({"kind": "embedder", "name_or_path": str(model), "trust_remote_code": True}, "text")
    (warning,) = code_warnings(caplog)
    assert warning.startswith("trust_remote_code=true: loading")
    assert "configuration_tiny.py, modeling_tiny.py" in warning


@pytest.fixture
def model_folder_code(tiny_model_dir, tmp_path, monkeypatch):
    """A model folder with code, on sys.path (as the working directory is for ``python -m textdml``)."""
    from textdml.models import remote_code

    folder = remote_code_model(tiny_model_dir, tmp_path / "code_tiny")
    (folder / "hooks.py").write_text(
        "from textdml.regularizers.base import BaseRegularizer\nfrom textdml.training.callbacks import Callback\n\n\n"
        "class Hook(Callback):\n    pass\n\n\nclass Penalty(BaseRegularizer):\n    def compute(self, x):\n"
        "        return x.sum() * 0\n")
    (folder / "fails.py").write_text("raise ImportError('the module ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(remote_code, "_warned_targets", set())
    yield folder
    for name in [name for name in sys.modules if name.split(".")[0] == "code_tiny"]:  # each test its own folder
        del sys.modules[name]


def build_from_target(path: str, target: str) -> None:
    from textdml.regularizers.base import as_regularizer
    from textdml.training.callbacks import create_callbacks

    if path == "loss.target":
        load_run_config(None, ["train.path=x.jsonl", f"loss={{target: {target}}}"])
    elif path == "image tower":
        import_component_class(target, "image tower")
    elif path == "training.callbacks":
        create_callbacks([target])
    else:
        as_regularizer({"target": target}, "loss 'x': embedding_regularizer")


TARGETS = {"loss.target": "code_tiny.modeling_tiny.TinyModel", "image tower": "code_tiny.modeling_tiny.TinyModel",
           "training.callbacks": "code_tiny.hooks.Hook", "regularizer": "code_tiny.hooks.Penalty"}


@pytest.mark.parametrize("path", list(TARGETS))
def test_a_target_from_a_model_folder_announces_the_code_it_runs(model_folder_code, caplog, path):
    with caplog.at_level(logging.WARNING, logger="textdml"):
        build_from_target(path, TARGETS[path])
    (warning,) = code_warnings(caplog)
    module = TARGETS[path].rsplit(".", 1)[0]
    assert f"'{TARGETS[path]}' imports and runs {module} ({model_folder_code / module.split('.')[1]}.py)" in warning
    assert f"code that came with the model folder {model_folder_code}" in warning


def test_the_target_warning_comes_before_the_import_and_not_for_library_code(model_folder_code, caplog):
    with caplog.at_level(logging.WARNING, logger="textdml"), pytest.raises(ValueError, match="the module ran"):
        import_component_class("code_tiny.fails.Thing", "loss")
    assert len(code_warnings(caplog)) == 1  # logged although the import failed: before any of it ran
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="textdml"):
        import_component_class("textdml.losses.info_nce.InfoNCELoss", "loss")
        import_component_class("torch.nn.Linear", "loss")
    assert code_warnings(caplog) == []


CALLED: list[str] = []


def not_a_regularizer(**kwargs):
    CALLED.append("called")


def test_a_regularizer_target_that_is_not_one_is_refused_before_it_is_called():
    import importlib

    from textdml.regularizers.base import as_regularizer

    imported = importlib.import_module("tests.models.test_remote_code")
    imported.CALLED.clear()
    with pytest.raises(ValueError, match=r"embedding_regularizer.target 'tests.models.test_remote_code."
                                         "not_a_regularizer' is not a BaseRegularizer subclass"):
        as_regularizer({"target": "tests.models.test_remote_code.not_a_regularizer"}, "loss 'x': embedding_regularizer")
    assert imported.CALLED == []
