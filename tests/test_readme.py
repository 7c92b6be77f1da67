"""The README's Python blocks run as printed, offline, from a scratch folder (nothing lands in the repo)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_readme_has_python_blocks_that_compile_and_import_real_names():
    import importlib

    blocks = python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textdml"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}") is not None, f"{node.module}.{alias.name}"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs_as_printed(index, tmp_path):
    block = python_blocks()[index]
    work = tmp_path / "clone"
    work.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")  # the README runs from the repository root
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", block], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Exception ignored" not in done.stderr, done.stderr[-4000:]  # e.g. a client never closed
    if "load_run_config" in block:
        assert "eval step 5: ndcg@10" in done.stdout and "'eval_ndcg@10'" in done.stdout  # the metrics show
        assert "a small domesticated feline" in done.stdout
    if "Trainer" in block:
        assert "torch.Size([1, 384])" in done.stdout
    assert not (ROOT / "runs" / "coming_from_st").exists() and not (ROOT / "runs" / "readme_qdrant").exists()


BARE_EXTRA_INSTALL = re.compile(r"pip install (?!-c )[^`\n]*-e \"?\.\[")


def test_install_section_names_the_setup_script_for_every_extra():
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]) - {"dev"}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install"):readme.index("\n## ", readme.index("## Install") + 1)]
    for extra in extras:
        assert f"bash scripts/setup.sh {extra}" in section, extra
    assert "pip install -c constraints.txt" in section


def test_no_recipe_or_readme_suggests_a_bare_pip_install_of_an_extra():
    # A bare `pip install -e ".[vision]"` swaps the CPU PyTorch for a CUDA build (issue 20).
    files = [ROOT / "README.md", *(ROOT / "recipes").rglob("*.yaml"), *(ROOT / "scripts").glob("*.py")]
    for path in files:
        for line in path.read_text().splitlines():
            if "not with a bare" in line:  # the README's warning itself
                continue
            assert not BARE_EXTRA_INSTALL.search(line), f"{path.relative_to(ROOT)}: {line.strip()}"
