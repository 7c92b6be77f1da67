"""The multi-GPU engine configs under recipes/accelerate load in Accelerate as the engine they name.

They need GPUs to run; on CPU the DDP path is run for real in tests/integration/test_ddp_cpu.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

CONFIGS = sorted((Path(__file__).parents[1] / "recipes" / "accelerate").glob("*.yaml"))
EXPECTED = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}


def test_every_engine_has_a_config():
    assert {path.stem for path in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_as_its_engine(path):
    config = load_config_from_file(str(path))
    assert str(config.distributed_type).split(".")[-1] == EXPECTED[path.stem]
    assert "Launch: accelerate launch --config_file" in path.read_text()
    if path.stem.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
    if path.stem == "fsdp":
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # final saves gather full weights
