"""Shared by the CLI tests (imported as ``tests.cli_checks``): the one-line error and a loss that fails."""

from __future__ import annotations

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
