"""The quickstart says what it will do and about how long it will take, before it starts, and never
replaces a run of other settings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.cli_checks import error_line
from textdml.cli import main
from textdml.quickstart import (
    STEP_FACTOR,
    PhaseLines,
    check_output_dir,
    estimate_seconds,
    format_duration,
    print_plan,
    quickstart_config,
    say,
)
from textdml.training.loop import RunStamp
from textdml.training.run_folder import write_run_files


def test_the_estimate_scales_with_steps_batch_and_eval_size():
    estimate = estimate_seconds(0.01, steps=150, batch_size=64, queries=1000, documents=800)
    assert estimate["training"] == pytest.approx(0.01 * STEP_FACTOR * 2 * 64 * 150)
    assert estimate["evaluations"] == pytest.approx(2 * 0.01 * 1800)  # base and fine-tuned
    assert estimate["indexing and search"] == pytest.approx(0.01 * 1800)
    assert format_duration(42) == "42 s" and format_duration(43 * 60) == "43 min"


def test_the_plan_lists_the_steps_and_the_estimate_up_front(capsys):
    config = SimpleNamespace(training=SimpleNamespace(max_steps=150, batch_size=64))
    evaluator = SimpleNamespace(queries=["q"] * 1000, corpus=["d"] * 771)
    print_plan(config, evaluator, {"training": 1500.0, "evaluations": 50.0, "indexing and search": 25.0})
    out = capsys.readouterr().out
    for step in ("1. evaluate the base model: 1000 held-out example sentences search 771 definitions",
                 "2. fine-tune it with InfoNCE for 150 steps of 64 pairs", "3. evaluate the fine-tuned model",
                 "4. index the definitions", "5. search the collection"):
        assert step in out, step
    assert "Estimated time on this machine: about 26 min (training ~25 min, evaluations ~50 s" in out
    assert "depends on the machine" in out


def test_phase_headers_come_after_the_base_evaluation_and_at_the_last_step(capsys):
    phases = PhaseLines(SimpleNamespace(training=SimpleNamespace(max_steps=3, batch_size=8)))
    phases.on_evaluate({"ndcg@10": 0.5}, SimpleNamespace(global_step=0))
    phases.on_log({"step": 2, "loss": 1.0}, SimpleNamespace(global_step=2))
    phases.on_log({"step": 3, "loss": 1.0}, SimpleNamespace(global_step=3))
    phases.on_evaluate({"ndcg@10": 0.6}, SimpleNamespace(global_step=3))
    out = capsys.readouterr().out
    assert out.count("[3/6] Fine-tuning") == 1 and out.count("[4/6] Evaluating the fine-tuned model") == 1
    assert out.index("[3/6]") < out.index("[4/6]")
    say("5/6", "x")
    assert capsys.readouterr().out == "\n[5/6] x\n"


def test_a_short_quickstart_never_replaces_a_run_of_other_settings(tmp_path, capsys):
    """Issue 20: `textdml quickstart --max-steps 10` silently replaced the full quickstart run."""
    out = tmp_path / "quickstart"
    full = quickstart_config(out)  # what `bash scripts/quickstart.sh` ran: its stamp, and a model
    stamp = RunStamp.of(full)
    write_run_files(out / "model", stamp.config_dict, stamp.fingerprint)
    (out / "model" / "final").mkdir()
    (out / "model" / "final" / "model.safetensors").write_bytes(b"the full run's weights")

    assert main(["quickstart", "--max-steps", "10", "--output-dir", str(out)]) == 2  # before loading anything
    line = error_line(capsys, "quickstart")
    assert str(out) in line and "training.max_steps" in line and "--output-dir" in line and "--force" in line
    assert (out / "model" / "final" / "model.safetensors").read_bytes() == b"the full run's weights"
    check_output_dir(out, full, force=False)  # the same settings again: it trains again
    check_output_dir(out, quickstart_config(out, 10), force=True)
    check_output_dir(tmp_path / "short", quickstart_config(tmp_path / "short", 10), force=False)
