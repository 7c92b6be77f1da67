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


def test_train_and_check_score_the_same_first_batch(tiny_model_dir, tmp_path):
    # 600 classes of 4 rows: a random sample of 256 rows (the brief preflight's) holds mostly one row
    # per class, which m_per_class then repeated: identical "positives" and a loss of -0.0000.
    rows = [{"anchor": f"text {c} variant {i}", "label": c} for c in range(600) for i in range(4)]
    config = config_for(tmp_path, tiny_model_dir, rows, "loss.name=triplet", "miner.name=batch_hard",
                        "training.sampler=m_per_class", "training.m_per_class=4", "training.batch_size=32")
    brief = run_preflight(config, brief=True)  # what `textdml train` runs first
    full = run_preflight(config)  # `textdml check`
    assert brief.get("initial_loss") == full.get("initial_loss")
    assert levels(brief)["initial_loss"] == "ok", brief.format()
    assert float(brief.get("initial_loss")[0].message.split()[2]) > 0


def test_multi_similarity_learns_from_negatives_of_one_row_classes(tiny_model_dir, tmp_path):
    rows = [{"anchor": f"text number {i}", "label": i} for i in range(16)]
    report = run_preflight(config_for(tmp_path, tiny_model_dir, rows, "loss.name=multi_similarity"), brief=True)
    classes = report.get("classes")[0]
    assert not report.errors and classes.level == "warning", report.format()
    assert "is 0.0" not in classes.message and "only pushes rows apart" in classes.message
    assert float(report.get("initial_loss")[0].message.split()[2]) > 0
    # A loss that needs a positive pair is still refused: it is 0.0 on such data.
    triplet = run_preflight(config_for(tmp_path, tiny_model_dir, rows, "loss.name=triplet"), brief=True)
    assert "classes" in [f.check for f in triplet.errors] and "is 0.0" in triplet.get("classes")[0].message


def test_texts_repeated_across_train_sets_never_meet_in_a_batch(tiny_model_dir, tmp_path):
    first = write_rows(tmp_path / "a.jsonl", [{"anchor": f"question {i}", "positive": f"answer {i}"} for i in range(32)])
    second = write_rows(tmp_path / "b.jsonl", [{"anchor": f"question {i}", "positive": f"reply {i}"} for i in range(32)])
    for strategy in ("round_robin", "proportional"):  # both draw each batch from one train set
        config = load_run_config(None, [f"train=[{{path: {first}}}, {{path: {second}}}]",
                                        f"model.name_or_path={tiny_model_dir}", f"training.output_dir={tmp_path / 'run'}",
                                        "training.batch_size=8", f"training.multi_dataset_strategy={strategy}"])
        report = run_preflight(config, brief=True)
        anchor = next(f for f in report.get("duplicates") if "'anchor'" in f.message)
        assert anchor.level == "ok" and "100.0% of rows repeat a text" in anchor.message, report.format()
        assert "0.0% meet a copy in the same batch" in anchor.message


def test_the_memory_estimate_pads_each_column_to_its_own_length(tiny_model_dir, tmp_path):
    import torch

    from textdml.data.pipeline import prepare_training_data
    from textdml.diagnostics.preflight import PreflightContext, batch_memory, sample_dataset
    from textdml.models import Embedder
    from textdml.training.build import build_loss
    from textdml.training.memory_planner import estimate_memory, trainable_parameters

    rows = [{"anchor": f"short {i}", "positive": "a long passage " * 20 + str(i)} for i in range(16)]
    config = config_for(tmp_path, tiny_model_dir, rows)
    model = Embedder.from_pretrained(tiny_model_dir)
    data = prepare_training_data(config, model, ("pairs",), "info_nce")
    context = PreflightContext(config, model, data, build_loss(config.loss), None, "info_nce", 1,
                               sample_dataset(data.dataset, 16, 0), False)
    need, texts, seq = batch_memory(context, torch.device("cpu"), None)
    lengths = [len(model.tokenizer(rows[0][column])["input_ids"]) for column in ("anchor", "positive")]
    fixed = estimate_memory(model, seq, None, "cpu")[0] + 8 * trainable_parameters(model)
    per_text = [estimate_memory(model, length, None, "cpu")[1] for length in lengths]
    assert (texts, seq) == (16, max(lengths)) and lengths[0] < lengths[1]
    assert need == pytest.approx(fixed + 8 * sum(per_text))  # not 16 texts at the passages' length
