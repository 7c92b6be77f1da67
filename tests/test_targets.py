"""``loss.target`` / ``miner.target``: classes only (modules of textdml, PML or the user), never a free call."""

from __future__ import annotations

import pytest

from textdml.config import ConfigError, load_run_config
from textdml.registry import LOSSES, import_component_class
from textdml.training.build import build_loss, build_miner


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "subprocess.call", "shutil.rmtree"])
def test_a_callable_that_is_not_a_class_is_refused_at_load(target):
    with pytest.raises(ConfigError, match="not a class"):
        load_run_config(None, ["train.path=x.jsonl", f"loss={{target: {target}, command: 'touch pwned'}}"])


def test_a_class_that_is_not_a_module_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a torch.nn.Module subclass"):
        load_run_config(None, ["train.path=x.jsonl", "miner={target: subprocess.Popen, args: [ls]}"])


def test_refused_at_build_time_too():
    # build_loss is also reached without load_run_config (Python API, hand-made dicts).
    with pytest.raises(ValueError, match="not a class"):
        build_loss({"target": "os.system", "command": "true"})
    with pytest.raises(ValueError, match="not a class"):
        LOSSES.build(target="os.system", command="true")


def test_missing_module_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot import it"):
        load_run_config(None, ["train.path=x.jsonl", "loss={target: no_such_pkg.Loss}"])


def test_classes_are_accepted():
    config = load_run_config(None, ["train.path=x.jsonl", "loss={target: textdml.losses.info_nce.InfoNCELoss}",
                                    "miner={target: textdml.miners.batch_hard.BatchHardMiner}"])
    assert type(build_loss(config.loss)).__name__ == "InfoNCELoss"
    assert type(build_miner(config.miner)).__name__ == "BatchHardMiner"
    assert import_component_class("torch.nn.Linear", "loss").__name__ == "Linear"
