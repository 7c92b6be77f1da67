"""The image-text recipes run two steps through the CLI on tiny towers and generated images, then
eval / index (named vectors) / search by text and by image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("efficientnet_lite_pytorch")

from tests.fakes_vision import write_colour_images  # noqa: E402
from textdml.cli import main  # noqa: E402

RECIPES = Path(__file__).parents[2] / "recipes" / "image_text"
TINY_ARCH = "textdml-tiny-recipe-clip"


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory) -> str:
    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY_ARCH}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return TINY_ARCH


def image_data(tmp_path: Path) -> tuple[Path, Path]:
    rows = write_colour_images(tmp_path / "images", per_colour=4)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps({k: r[k] for k in ("id", "image", "text")}) + "\n" for r in rows))
    test.write_text("".join(json.dumps({k: r[k] for k in ("id", "image", "text")}) + "\n" for r in rows[::2]))
    return train, test


@pytest.mark.parametrize("recipe", ["lit_efficientnet_minilm_emoji", "open_clip_vit_b32_emoji"])
def test_two_steps_then_eval_index_search(recipe, tiny_arch, tiny_model_dir, tmp_path, capsys):
    train, test = image_data(tmp_path)
    config = str(RECIPES / f"{recipe}.yaml")
    towers = ([f"model.dual.text.name_or_path={tiny_model_dir}", "model.dual.projection_dim=32"]
              if recipe.startswith("lit") else [f"model.dual.arch={tiny_arch}"])
    overrides = [*towers, f"train.path={train}", f"eval.data.path={test}", "training.max_steps=2",
                 "training.batch_size=8", "training.save_steps=1", "training.eval_steps=2",
                 f"training.output_dir={tmp_path / 'run'}", f"index.path={tmp_path / 'qdrant'}",
                 "index.collection=pairs", "training.show_progress_bar=false"]
    assert main(["train", "--config", config, *overrides]) == 0
    model = str(tmp_path / "run" / "final")
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").exists() and (Path(model) / "README.md").exists()
    capsys.readouterr()
    assert main(["eval", "--config", config, "--model", model, *overrides]) == 0
    assert "i2t_recall@1" in capsys.readouterr().out
    assert main(["index", "--config", config, "--model", model, *overrides]) == 0
    out = capsys.readouterr().out
    assert "indexed 8 documents into pairs__" in out and "'pairs' now points at it" in out
    assert main(["collections", f"index.path={tmp_path / 'qdrant'}"]) == 0
    listing = capsys.readouterr().out
    assert "*  pairs__" in listing and "ready" in listing and "sha256" in listing.split("\n")[1]
    first_image = json.loads(test.read_text().splitlines()[0])["image"]
    assert main(["search", "--config", config, "--model", model, "--text", "a red square", "--image", first_image,
                 "--top-k", "2", *overrides]) == 0
    out = capsys.readouterr().out
    assert "a red square" in out and first_image in out and ".png]" in out


def test_open_clip_save_loads_in_open_clip(tiny_arch, tmp_path):
    from textdml.models.dual_encoder import create_dual_encoder

    model = create_dual_encoder({"kind": "open_clip", "arch": tiny_arch, "pretrained": None})
    model.save_pretrained(tmp_path / "saved")
    loaded, _, _ = open_clip.create_model_and_transforms(tiny_arch, pretrained=str(tmp_path / "saved" / "open_clip_model.safetensors"))
    assert loaded.logit_scale.item() == pytest.approx(model.logit_scale.item())


def test_missing_image_file_is_a_clear_error(tiny_arch, tmp_path, capsys):
    train, test = image_data(tmp_path)
    rows = train.read_text().splitlines()
    bad = json.loads(rows[0]) | {"image": str(tmp_path / "nope.png")}
    train.write_text("\n".join([json.dumps(bad), *rows[1:]]) + "\n")
    config = str(RECIPES / "open_clip_vit_b32_emoji.yaml")
    assert main(["train", "--config", config, f"model.dual.arch={tiny_arch}", f"train.path={train}",
                 "eval.data=null", "training.max_steps=1", "training.batch_size=4", "training.sampler=sequential",
                 f"training.output_dir={tmp_path / 'run'}"]) == 2
    assert "nope.png' does not exist" in capsys.readouterr().err
