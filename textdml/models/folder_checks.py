"""A model folder is checked for weights before ``transformers`` is asked to load it.

``transformers`` reports a folder without weights as "Error no file named model.safetensors, or
pytorch_model.bin, found in directory X", which names no cause or fix; a folder left by an
interrupted save, or a copy that skipped the large files, is the usual reason.
"""

from __future__ import annotations

from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")


def check_weights(folder: Path) -> None:
    """Raise ``FileNotFoundError`` naming ``folder`` when it has a ``config.json`` but no weights file."""
    folder = Path(folder)
    if not (folder / "config.json").exists() or any((folder / name).exists() for name in WEIGHT_FILES):
        return
    found = sorted(p.name for p in folder.iterdir())[:8]
    raise FileNotFoundError(
        f"model folder {str(folder)!r} has a config.json but no weights ({' or '.join(WEIGHT_FILES[:3])}); it "
        f"holds {found}. It may come from an interrupted save or an incomplete copy (Git LFS pointers, a "
        "download that skipped large files): save or copy the model again"
    )
