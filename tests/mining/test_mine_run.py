"""Mining as a run step: `textdml mine`, and `train` with a mine section (mined once, reused on resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from textdml.cli import main
from textdml.config import ConfigError, load_run_config

RECIPE = Path(__file__).parents[2] / "recipes" / "retrieval" / "minilm_hard_negatives_wordnet.yaml"


def overrides(tiny_model_dir, tmp_path) -> list[str]:
    return [f"model.name_or_path={tiny_model_dir}", "train.max_rows=120", "training.batch_size=8",
            "training.max_steps=2", "training.save_steps=1", "eval.data.max_rows=20",
            f"training.output_dir={tmp_path / 'run'}", "training.show_progress_bar=false"]


def test_mine_verb_writes_the_table_and_its_settings(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "mined"
    assert main(["mine", "--config", str(RECIPE), "--output", str(out), *overrides(tiny_model_dir, tmp_path)]) == 0
    assert "mined.parquet" in capsys.readouterr().out
    table = Dataset.from_parquet(str(out / "mined.parquet"))
    assert {"anchor", "positive", "negative_1", "scores"} <= set(table.column_names)
    settings = json.loads((out / "mining_settings.json").read_text())
    recipe = load_run_config(RECIPE).mine  # the recipe's selection is what the settings file records
    assert {key: settings["settings"][key] for key in ("range_min", "range_max", "absolute_margin", "relative_margin",
                                                       "sampling_strategy")} == \
        {key: getattr(recipe, key) for key in ("range_min", "range_max", "absolute_margin", "relative_margin",
                                               "sampling_strategy")}
    assert all(row["negative_1"] != row["positive"] for row in table)


def test_train_mines_first_and_a_resumed_run_reuses_the_table(tiny_model_dir, tmp_path) -> None:
    args = ["train", "--config", str(RECIPE), *overrides(tiny_model_dir, tmp_path)]
    assert main(args) == 0
    mined = tmp_path / "run" / "mined"
    shards = sorted(mined.glob("shards/shard-*.parquet"))
    assert shards and (mined / "mined.parquet").exists()
    stamp = [p.stat().st_mtime_ns for p in shards]
    # A longer schedule is another run's config: resuming it is asked for explicitly.
    assert main([*args, "training.resume_from_checkpoint=latest", "training.max_steps=3",
                 "training.force_resume=true"]) == 0
    assert [p.stat().st_mtime_ns for p in shards] == stamp  # the same weights and settings: nothing re-mined


def test_mine_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="mine.range_min=5..mine.range_max=5 leaves 0 candidates"):
        load_run_config(RECIPE, ["mine.range_min=5", "mine.range_max=5"])
    with pytest.raises(ConfigError, match="unknown key config.mine.top_k"):
        load_run_config(RECIPE, ["mine.top_k=3"])


def final_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_remining_logs_its_cost_and_a_resumed_run_equals_an_unbroken_one(tiny_model_dir, tmp_path) -> None:
    import torch

    common = [f"model.name_or_path={tiny_model_dir}", "train.max_rows=120", "training.batch_size=8",
              "training.remine_every=2", "training.save_steps=1", "training.save_total_limit=null",
              "eval.data.max_rows=20", "training.show_progress_bar=false", "mine.range_max=10",
              "mine.absolute_margin=null"]
    unbroken = ["train", "--config", str(RECIPE), *common, "training.max_steps=5",
                f"training.output_dir={tmp_path / 'unbroken'}"]
    assert main(unbroken) == 0
    records = [json.loads(line) for line in (tmp_path / "unbroken" / "metrics.jsonl").read_text().splitlines()]
    remines = [r for r in records if "remine_seconds" in r]
    assert [r["step"] for r in remines] == [2, 4] and all(r["remine_rows"] > 0 for r in remines)
    assert any(key.startswith("remine_eval_") for key in remines[0])
    assert (tmp_path / "unbroken" / "mined" / "step-4" / "mined.parquet").exists()

    # The same run resumed from its checkpoint at step 3 (past the first re-mine), with its mined tables.
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "unbroken" / "checkpoints" / "checkpoint-3", broken / "checkpoints" / "checkpoint-3")
    shutil.copytree(tmp_path / "unbroken" / "mined", broken / "mined")
    state = json.loads((broken / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["mined_at_step"] == 2
    assert main(["train", "--config", str(RECIPE), *common, "training.max_steps=5", f"training.output_dir={broken}",
                 "training.resume_from_checkpoint=latest"]) == 0
    ours, theirs = final_weights(broken / "final"), final_weights(tmp_path / "unbroken" / "final")
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=1e-6)


def test_remine_every_needs_a_mine_section() -> None:
    base = Path(__file__).parents[2] / "recipes" / "retrieval" / "minilm_info_nce_wordnet.yaml"
    with pytest.raises(ConfigError, match="needs to be >= 1 and a mine section"):
        load_run_config(base, ["training.remine_every=10"])


def test_mine_verb_through_a_collection_indexes_it_once(tiny_model_dir, tmp_path, capsys) -> None:
    from textdml.index import list_versions, open_client

    def mine(output: str) -> list[str]:  # --collection among the overrides: the verbs parse them intermixed
        return ["mine", "--config", str(RECIPE), f"index.path={tmp_path / 'qdrant'}", "--collection", "wordnet-train",
                "--output", str(tmp_path / output), *overrides(tiny_model_dir, tmp_path), "mine.exact=true"]

    assert main(mine("first")) == 0
    assert "searched wordnet-train__" in capsys.readouterr().out
    settings = json.loads((tmp_path / "first" / "mining_settings.json").read_text())
    assert settings["collection"]["indexed"] and settings["collection"]["exact"]
    assert main(mine("again")) == 0
    assert "(as it was)" in capsys.readouterr().out
    again = json.loads((tmp_path / "again" / "mining_settings.json").read_text())["collection"]
    assert again["version"] == settings["collection"]["version"] and not again["indexed"]
    with open_client(path=tmp_path / "qdrant") as engine:
        assert len(list_versions(engine, "wordnet-train")) == 1
    table = Dataset.from_parquet(str(tmp_path / "again" / "mined.parquet"))
    assert all(row["negative_1"] != row["positive"] for row in table)


def test_mine_verb_rejects_a_collection_name_with_the_version_separator(tmp_path, capsys) -> None:
    assert main(["mine", "--config", str(RECIPE), "--collection", "a__b"]) == 2
    assert "mine.collection='a__b' must be a non-empty name without '__'" in capsys.readouterr().err


def test_remining_through_a_collection_writes_a_version_each_time_and_resumes(tiny_model_dir, tmp_path) -> None:
    import shutil

    import torch

    from textdml.index import list_versions, open_client

    common = [f"model.name_or_path={tiny_model_dir}", "train.max_rows=64", "training.batch_size=8",
              "training.remine_every=2", "training.save_steps=1", "training.save_total_limit=null",
              "eval.data.max_rows=10", "training.show_progress_bar=false", "mine.range_max=10",
              "mine.absolute_margin=null", "mine.collection=wordnet-train", "mine.exact=true",
              f"index.path={tmp_path / 'qdrant'}", "training.max_steps=5"]
    assert main(["train", "--config", str(RECIPE), *common, f"training.output_dir={tmp_path / 'unbroken'}"]) == 0
    mined = tmp_path / "unbroken" / "mined"
    used = [json.loads((mined / folder / "mining_settings.json").read_text())["collection"]
            for folder in (".", "step-2", "step-4")]
    with open_client(path=tmp_path / "qdrant") as engine:
        versions = list_versions(engine, "wordnet-train")
    assert [v.name for v in versions] == [u["version"] for u in used]  # one new version per mining, in order
    assert all(u["indexed"] for u in used) and [v.live for v in versions] == [False, False, True]
    assert len({u["model"]["weights_sha256"] for u in used}) == 3

    # Resumed past the first re-mine: the step-4 re-mine finds the version of its (same) weights live.
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "unbroken" / "checkpoints" / "checkpoint-3", broken / "checkpoints" / "checkpoint-3")
    shutil.copytree(mined, broken / "mined")
    assert main(["train", "--config", str(RECIPE), *common, f"training.output_dir={broken}",
                 "training.resume_from_checkpoint=latest"]) == 0
    with open_client(path=tmp_path / "qdrant") as engine:
        assert len(list_versions(engine, "wordnet-train")) == 3
    ours, theirs = final_weights(broken / "final"), final_weights(tmp_path / "unbroken" / "final")
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=1e-6)


def test_mine_verb_in_bfloat16(tiny_model_dir, tmp_path) -> None:
    """The README's fast path: `textdml mine ... model.dtype=bfloat16` mines the same table shape."""
    out = tmp_path / "mined"
    assert main(["mine", "--config", str(RECIPE), "--output", str(out), *overrides(tiny_model_dir, tmp_path),
                 "model.dtype=bfloat16"]) == 0
    table = Dataset.from_parquet(str(out / "mined.parquet"))
    assert table.num_rows > 0 and all(row["negative_1"] != row["positive"] for row in table)
