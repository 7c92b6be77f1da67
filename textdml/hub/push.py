"""Push a saved model to the Hugging Face Hub (sentence-transformers' ``model.push_to_hub``)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

DEFAULT_CARD = """---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags:
- textdml
- sentence-transformers
- sentence-similarity
- feature-extraction
---

# {name}

A sentence embedding model trained with [textdml](https://pypi.org/project/textdml/). It loads in
sentence-transformers (`SentenceTransformer("{repo_id}")`) and in textdml (`Embedder.from_pretrained("{repo_id}")`).
"""


def push_to_hub(model: Any, repo_id: str, *, token: str | None = None, private: bool | None = None,
                commit_message: str = "Upload model trained with textdml", model_card: str | None = None,
                revision: str | None = None) -> str:
    """Save ``model`` (its ``save_pretrained`` layout) and upload it as one commit to ``repo_id``.

    The repository is created when missing. A training run's own card (``final/README.md``) is
    kept by pushing that folder's model: pass its text as ``model_card``; otherwise a short card
    is written.

    Args:
        model: an ``Embedder`` or ``DualEncoder``.
        repo_id: ``"user/name"`` on the Hub.
        token: a Hub token (default: the logged-in one).
        private: create the repository private.
        commit_message: the commit's message.
        model_card: the README.md to upload.
        revision: the branch to push to.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id must look like 'user/model-name', got {repo_id!r}")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        card = Path(folder) / "README.md"
        if model_card is not None or not card.exists():
            card.write_text(model_card or DEFAULT_CARD.format(name=repo_id.split("/")[-1], repo_id=repo_id))
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                   revision=revision, repo_type="model")
    return str(getattr(commit, "commit_url", commit))
