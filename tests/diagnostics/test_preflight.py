from __future__ import annotations

import json

import pytest
from datasets import Dataset

from textdml.cli import main
from textdml.config import load_run_config
from textdml.diagnostics.preflight import PreflightError, PreflightReport, duplicate_shares, run_preflight
from textdml.training.loop import train


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def pair_rows(n=32, repeat_every=None):
    return [{"anchor": f"question number {i % repeat_every if repeat_every else i}", "positive": f"answer {i} here"}
            for i in range(n)]


def config_for(tmp_path, model_dir, rows, *overrides):
    data = write_rows(tmp_path / "train.jsonl", rows)
    return load_run_config(None, [f"train.path={data}", f"model.name_or_path={model_dir}",
                                  f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8",
                                  "loss.name=info_nce",
                                  "training.show_progress_bar=false", *overrides])


def levels(report: PreflightReport) -> dict[str, str]:
    worst = {}
    for finding in report.findings:
        rank = ("ok", "warning", "error").index
        if finding.check not in worst or rank(finding.level) > rank(worst[finding.check]):
            worst[finding.check] = finding.level
    return worst


def test_clean_pairs_pass_with_the_expected_loss_and_memory(tiny_model_dir, tmp_path):
    report = run_preflight(config_for(tmp_path, tiny_model_dir, pair_rows(), "training.batch_size=32"))
    found = levels(report)
    assert not report.errors
    for check in ("columns", "truncation", "duplicates", "negatives", "temperature", "initial_loss", "memory",
                  "base_metrics"):
        assert found[check] == "ok", report.format()
    assert "log(32)" in report.get("initial_loss")[0].message
    assert "31 negatives per anchor" in report.get("negatives")[0].message


def test_duplicates_truncation_and_a_hot_temperature_are_warnings_with_fixes(tiny_model_dir, tmp_path):
    rows = pair_rows(64, repeat_every=4)
    for row in rows[:8]:
        row["positive"] = "word " * 40
    report = run_preflight(config_for(tmp_path, tiny_model_dir, rows, "model.max_seq_length=16",
                                      "loss.temperature=1.0"))
    found = levels(report)
    assert found["duplicates"] == found["truncation"] == found["temperature"] == "warning", report.format()
    fixes = {f.check: f.fix for f in report.warnings}
    assert "no_duplicates" in fixes["duplicates"] and "max_seq_length" in fixes["truncation"]
    assert "loss.temperature" in fixes["temperature"]
    # The no-duplicates sampler removes the per-batch duplicates.
    clean = run_preflight(config_for(tmp_path, tiny_model_dir, rows, "training.sampler=no_duplicates"))
    assert levels(clean)["duplicates"] == "ok"


def test_a_met_margin_is_a_warning(tiny_model_dir, tmp_path):
    # With a negative margin every triplet is already satisfied: no gradient at all.
    report = run_preflight(config_for(tmp_path, tiny_model_dir, pair_rows(), "loss.name=triplet",
                                      "loss.margin=-2.0"), brief=True)
    assert levels(report)["margins"] == "warning" and "100.0%" in report.get("margins")[0].message


def test_missing_column_and_empty_text_are_errors(tiny_model_dir, tmp_path):
    report = run_preflight(config_for(tmp_path, tiny_model_dir, [{"question": "a", "answer": "b"}] * 8))
    assert [f.check for f in report.errors] == ["data"] and "anchor" in report.errors[0].message
    rows = pair_rows()
    rows[3]["positive"] = "  "
    report = run_preflight(config_for(tmp_path, tiny_model_dir, rows))
    assert report.errors and "row 3" in report.errors[0].message


def test_duplicate_shares_counts_copies_per_batch():
    assert duplicate_shares(["a", "b", "c"], 2) == (0.0, 0.0)
    across, per_batch = duplicate_shares(["a"] * 10, 10)
    assert across == 1.0 and per_batch == pytest.approx(1.0)


def test_check_cli_exit_codes_and_report_file(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    data = write_rows(tmp_path / "train.jsonl", pair_rows())
    config.write_text(f"model: {{name_or_path: {tiny_model_dir}}}\ntrain: {{path: {data}}}\n"
                      "training: {batch_size: 8}\n")
    assert main(["check", "--config", str(config)]) == 0
    assert "preflight: 0 error(s)" in capsys.readouterr().out
    singles = write_rows(tmp_path / "singles.jsonl", [{"anchor": f"text {i}", "label": i} for i in range(16)])
    assert main(["check", "--config", str(config), f"train.path={singles}", "loss.name=triplet"]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "16 of 16 classes" in out


def test_train_stops_on_preflight_errors_unless_turned_off(tiny_model_dir, tmp_path):
    data = Dataset.from_dict({"anchor": [f"text {i}" for i in range(16)], "label": list(range(16))})
    config = config_for(tmp_path, tiny_model_dir, pair_rows(), "loss.name=triplet", "training.max_steps=1")
    with pytest.raises(PreflightError, match="16 of 16 classes.*training.preflight=false"):
        train(config, train_dataset=data)
    assert PreflightReport.load(tmp_path / "run" / "preflight.json").errors


def test_labelled_data_needs_positives_in_each_batch(tiny_model_dir, tmp_path):
    rows = [{"anchor": f"text {c} {i}", "label": c} for c in range(32) for i in range(2)]
    random = run_preflight(config_for(tmp_path, tiny_model_dir, rows, "loss.name=triplet"), brief=True)
    assert levels(random)["positives"] == "warning" and "m_per_class" in random.get("positives")[0].fix
    grouped = run_preflight(config_for(tmp_path, tiny_model_dir, rows, "loss.name=triplet",
                                       "training.sampler=m_per_class", "training.m_per_class=2"), brief=True)
    assert levels(grouped)["positives"] == "ok" and levels(grouped)["classes"] == "ok"


def test_one_row_classes_are_fine_for_class_level_losses(tiny_model_dir, tmp_path):
    rows = [{"anchor": f"text number {i}", "label": i} for i in range(16)]
    report = run_preflight(config_for(tmp_path, tiny_model_dir, rows, "loss.name=proxy_anchor"), brief=True)
    assert not report.errors and levels(report)["classes"] == "ok", report.format()
