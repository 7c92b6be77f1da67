from __future__ import annotations

import pytest
import torch

from textdml.models import Embedder
from textdml.models.layers import keep_layers


def test_keeps_evenly_spread_layers_and_reloads(tiny_model_dir, tmp_path):
    embedder = Embedder.from_pretrained(tiny_model_dir).eval()
    layers = embedder.transformer.encoder.layer
    assert keep_layers(embedder.transformer, 5) == [0, 1]  # no more layers than asked: all kept
    first = layers[0]
    assert keep_layers(embedder.transformer, 1) == [0]
    assert embedder.transformer.encoder.layer[0] is first and embedder.transformer.config.num_hidden_layers == 1
    embedder.save_pretrained(tmp_path / "student")
    reloaded = Embedder.from_pretrained(tmp_path / "student").eval()
    torch.testing.assert_close(reloaded.encode(["a test"], convert_to="torch"), embedder.encode(["a test"], convert_to="torch"))
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        keep_layers(embedder.transformer, 0)
