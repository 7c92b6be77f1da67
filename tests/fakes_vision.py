"""A small deterministic stand-in for a dual encoder (tests of data, evaluation and indexing)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from textdml.data.images import load_image


class ColourDualEncoder:
    """Images -> their mean colour; texts -> the colour their words name. Captions naming an
    image's colour therefore match it, which makes retrieval results predictable."""

    similarity = "cosine"
    embedding_dim = 3
    COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
               "yellow": (1.0, 1.0, 0.0), "white": (1.0, 1.0, 1.0)}

    def encode(self, texts, batch_size=32, normalize=None, show_progress_bar=None, convert_to="numpy"):
        rows = []
        for text in texts:
            colour = next((c for word, c in self.COLOURS.items() if word in text), None)
            if colour is None:  # unknown words: a fixed pseudo-random direction
                seed = int(hashlib.md5(text.encode()).hexdigest()[:8], 16)
                colour = tuple(np.random.default_rng(seed).random(3))
            rows.append(colour)
        return self.finish(torch.tensor(rows, dtype=torch.float32) + 1e-3, convert_to)

    def encode_images(self, images, batch_size=32, show_progress_bar=None, convert_to="numpy"):
        rows = [torch.from_numpy(np.asarray(load_image(image), dtype=np.float32) / 255).mean(dim=(0, 1))
                for image in images]
        return self.finish(torch.stack(rows) + 1e-3, convert_to)

    @staticmethod
    def finish(vectors, convert_to):
        vectors = F.normalize(vectors, dim=-1)
        return vectors.numpy() if convert_to == "numpy" else vectors

    def identity(self):
        return {"model_name": "colour-fake", "weights_sha256": "0" * 64}


def write_colour_images(folder, colours=("red", "green", "blue", "yellow"), per_colour=3, size=16):
    """PNG files of solid colours (RGBA with an opaque body), returned as rows with captions."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for colour in colours:
        rgb = tuple(int(255 * c) for c in ColourDualEncoder.COLOURS[colour])
        for i in range(per_colour):
            path = folder / f"{colour}_{i}.png"
            Image.new("RGBA", (size, size), (*rgb, 255)).save(path)
            rows.append({"id": f"{colour}-{i}", "image": str(path), "text": f"a {colour} square number {i}",
                         "label": colour})
    return rows
