from __future__ import annotations

from pathlib import Path

import pytest

from textdml.config import ConfigError, load_run_config

RECIPES = sorted(p for p in Path(__file__).parents[1].joinpath("recipes").rglob("*.yaml") if p.parent.name != "accelerate")


def test_overrides_are_parsed_as_yaml():
    config = load_run_config(None, ["train.path=data.jsonl", "training.batch_size=8", "loss.name=info_nce", "loss.temperature=0.1",
                                    "model.normalize=true", "train.columns={anchor: q, positive: a}"])
    assert config.training.batch_size == 8 and config.loss == {"name": "info_nce", "temperature": 0.1}
    assert config.model.normalize is True and config.train.columns == {"anchor": "q", "positive": "a"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.batch_sise=8"], "unknown key config.training.batch_sise: did you mean 'batch_size'"),
        (["loss.name=infonce"], "unknown loss 'infonce': did you mean 'info_nce'"),
        (["training.batch_size=many"], "must be an integer"),
        (["training.mixed_precision=fp8"], "must be one of"),
        (["miner.name=batch_hardd"], "unknown miner 'batch_hardd'"),
        (["training.batch_size=0"], "must be >= 1"),
        (["train.path=''"], "train.path is empty"),
        (["oops"], "must look like section.key=value"),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(None, ["train.path=data.jsonl", *overrides])


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training: {batch_size: 8\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_run_config(path)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_run_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_and_validates(recipe):
    from textdml.training.build import build_loss, build_miner

    config = load_run_config(recipe)
    build_loss(config.loss, embedding_size=32, num_classes=5)
    build_miner(config.miner)


def test_config_error_lives_in_errors_and_is_re_exported():
    import textdml
    import textdml.config
    import textdml.errors

    assert textdml.config.ConfigError is textdml.errors.ConfigError is textdml.ConfigError
    assert issubclass(ConfigError, ValueError)
