"""training/run_stamp.py: a run's identity in its folder, and where it starts."""

from __future__ import annotations

from accelerate import Accelerator

from tests.training.loop_inputs import make_config
from textdml.training.run_stamp import RunStamp, resume


def test_the_fingerprint_follows_what_changes_the_run_not_where_it_is_written(tmp_path, tiny_model_dir):
    stamp = RunStamp.of(make_config(tiny_model_dir, tmp_path / "a"))
    assert RunStamp.of(make_config(tiny_model_dir, tmp_path / "a")).fingerprint == stamp.fingerprint
    assert RunStamp.of(make_config(tiny_model_dir, tmp_path / "a", "training.learning_rate=5e-4")).fingerprint \
        != stamp.fingerprint
    assert stamp.config_dict["training"]["learning_rate"] == 1e-3


def test_a_run_without_a_checkpoint_starts_fresh_stamped_with_its_fingerprint(tmp_path, tiny_model_dir):
    config = make_config(tiny_model_dir, tmp_path)
    stamp = RunStamp.of(config)
    state, checkpoint = resume(Accelerator(cpu=True), stamp, config.training)
    assert checkpoint is None and state.global_step == 0 and state.config_sha256 == stamp.fingerprint
