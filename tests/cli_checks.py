"""Shared by the CLI tests (imported as ``tests.cli_checks``): a small recipe, the one-line error,
and a loss that fails."""

from __future__ import annotations

import json
from pathlib import Path

from textdml.losses.base import BaseLoss


class AlwaysNanLoss(BaseLoss):
    """Test-only loss: NaN from the first step (a recipe names it by ``target: tests.cli_checks.AlwaysNanLoss``)."""

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels, same_set, indices):
        return (embeddings @ ref_embeddings.T).mean() * float("nan")


def error_line(capsys, verb: str) -> str:
    """The last stderr line, checked to be ``textdml <verb>: error: ...`` without a traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    print(err[-1] if err else "")
    assert err and err[-1].startswith(f"textdml {verb}: error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def write_recipe(folder: Path, model_dir: Path, rows: int, training: str, evaluate: bool = False) -> str:
    """``folder/pairs.jsonl`` (``rows`` question/answer pairs) and ``folder/recipe.yaml`` training the
    model at ``model_dir`` on them into ``folder/run``; ``training`` holds the other training settings
    (``"max_steps: 1, batch_size: 4"``); ``evaluate`` evaluates on the same pairs."""
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps({"anchor": f"question {i}", "positive": f"answer {i}"}) + "\n"
                            for i in range(rows)))
    path = folder / "recipe.yaml"
    path.write_text(f"model: {{name_or_path: {model_dir}}}\ntrain: {{path: {data}}}\n"
                    + (f"eval: {{data: {{path: {data}}}}}\n" if evaluate else "")
                    + f"training: {{output_dir: {folder / 'run'}, {training}}}\n")
    return str(path)
