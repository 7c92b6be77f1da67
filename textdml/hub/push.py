"""Push a saved model to the Hugging Face Hub (``textdml push``) through ``huggingface_hub``.

What is uploaded is first written to a staging folder: the model's weights (or its adapter),
configs, tokenizer and card, without checkpoints, tracker logs or run files, with every local
path replaced by a Hub id (the card's ``base_model``, an adapter's ``base_model_name_or_path``).
``dry_run`` stops there and leaves that exact folder to look at; its hidden ``.textdml-output``
marker (never uploaded) lets a later push replace it, and nothing else. The token comes from where
``huggingface_hub`` keeps it (``HF_TOKEN``, ``hf auth login``) and is written nowhere.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textdml.hub.base_model import hub_id_for, is_local_path, looks_like_hub_id, scrub_paths
from textdml.hub.layout import (
    ADAPTER_CONFIG,
    DUAL_ENCODER_CONFIG,
    MODEL_CARD,
    MODEL_MARKERS,  # noqa: F401  (textdml.hub.push.MODEL_MARKERS, kept for one release)
    MODULES,
    TEXTDML_CONFIG,
    is_saved_model,
)
from textdml.outputs import MARKER, check_apart, seal_output_folder, start_output_folder

logger = logging.getLogger(__name__)

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
# Training by-products that do not belong in a model repository.
EXCLUDE = ("checkpoints", ".partial-*", "tensorboard", "mlruns", "wandb", "trackio", "metrics.jsonl",
           "run_config.json", "__pycache__", ".cache", ".git", "*.lock", ".DS_Store", MARKER)
TEXT_SUFFIXES = (".json", ".md", ".txt", ".yaml", ".yml")
# Vocabularies: their strings are tokens, never paths, and are left exactly as they are.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "special_tokens_map.json", "added_tokens.json")


@dataclass
class PushResult:
    repo_id: str
    folder: Path  # the staged folder: exactly what is (or would be) uploaded
    files: list[tuple[str, int]] = field(default_factory=list)  # (path in the repo, bytes)
    url: str | None = None  # None for a dry run
    revision: str | None = None


def check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id \
            or repo_id.endswith((".git", ".")):
        raise ValueError(f"repo id {repo_id!r} must look like namespace/name: your user or organisation name, a "
                         "slash, then the model name (letters, digits, '-', '_', '.'), e.g. alice/minilm-wordnet")


def check_model_folder(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {str(model_dir)!r} does not exist")
    if is_saved_model(model_dir):
        return
    hint = ""
    for child in ("final", "best"):
        if is_saved_model(model_dir / child):
            hint = f" It looks like a run folder: push {model_dir / child}"
            break
    raise ValueError(f"{model_dir} is not a textdml / sentence-transformers model save (no {MODULES} or "
                     f"{DUAL_ENCODER_CONFIG}).{hint or ' Pass the final/ or best/ folder that training wrote.'}")


def find_token(token: str | None) -> str:
    from huggingface_hub import get_token

    found = token or get_token()
    if not found:
        raise ValueError("no Hugging Face token found, nothing was uploaded: log in with `hf auth login` (or "
                         "`huggingface-cli login`), or set the HF_TOKEN environment variable to a token with write "
                         "access (https://huggingface.co/settings/tokens)")
    return found


def excluded(relative: str) -> bool:
    parts = relative.split("/")
    return any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in EXCLUDE)


def stage_folder(model_dir: Path, staging: Path, repo_id: str, base_model: str | None = None,
                 force: bool = False) -> list[tuple[str, int]]:
    """Copy what belongs in the repository to ``staging`` and make it public-safe; returns its files.

    ``staging`` is made anew: missing, empty, or a folder staged earlier (its marker lists every
    file, unchanged since); anything else is refused unless ``force``.
    """
    check_apart(staging, model_dir, "staging folder", "model folder")
    start_output_folder(staging, "textdml push", force=force, instead="name a new folder with --output")
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir).as_posix()
        if path.is_dir() or excluded(relative):
            continue
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    base = resolve_base(model_dir, base_model)
    fix_adapter_config(staging, base)
    fix_textdml_config(staging, base)
    fix_card(staging, repo_id, base)
    for file in staging.rglob("*.json"):
        if file.name not in TOKENIZER_FILES:
            scrub_json_file(file)
    readme = staging / MODEL_CARD
    readme.write_text(scrub_paths(readme.read_text(), [str(model_dir), str(model_dir.resolve()), str(Path.cwd())]))
    seal_output_folder(staging)
    return [(p.relative_to(staging).as_posix(), p.stat().st_size) for p in sorted(staging.rglob("*"))
            if p.is_file() and p.name != MARKER]


def scrub_json_file(file: Path) -> None:
    """Replace string values that are paths on this machine by their Hub id or last component."""
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and value.startswith(("/", "~", "./", "../")) and len(value) > 1:
            return hub_id_for(value) or Path(value.rstrip("/")).name
        return value

    cleaned = clean(data)
    if cleaned != data:
        file.write_text(json.dumps(cleaned, indent=2) + "\n")


def resolve_base(model_dir: Path, base_model: str | None) -> str | None:
    """The Hub id of the model this one was trained from: given, from the card, or from the adapter's base."""
    if base_model is not None:
        if not looks_like_hub_id(base_model):
            raise ValueError(f"base model {base_model!r} must be a Hub id like sentence-transformers/all-MiniLM-L6-v2")
        return base_model
    readme = model_dir / MODEL_CARD
    if readme.exists():
        card_base = read_card(readme).data.base_model
        if isinstance(card_base, str) and looks_like_hub_id(card_base):
            return card_base
    adapter_config = model_dir / ADAPTER_CONFIG
    if adapter_config.exists():
        return hub_id_for(json.loads(adapter_config.read_text()).get("base_model_name_or_path"))
    return None


def read_card(readme: Path) -> Any:
    import yaml
    from huggingface_hub import ModelCard

    try:
        return ModelCard(readme.read_text())
    except (ValueError, yaml.YAMLError) as err:
        raise ValueError(f"{readme} is not a valid model card (YAML metadata between --- lines, then Markdown): "
                         f"{err}; fix or delete it, nothing was uploaded") from err


def fix_adapter_config(staging: Path, base: str | None) -> None:
    """An adapter on the Hub must name its base by Hub id: a local path there loads nowhere else."""
    file = staging / ADAPTER_CONFIG
    if not file.exists():
        return
    config = json.loads(file.read_text())
    current = config.get("base_model_name_or_path") or ""
    if current and not is_local_path(current):
        return
    if base is None:
        raise ValueError(f"the adapter's base model is the local folder {current!r}, which has no known Hub id: pass "
                         "the Hub id it came from with --base-model (push_to_hub(base_model=...)); nothing was uploaded")
    config["base_model_name_or_path"] = base
    file.write_text(json.dumps(config, indent=2) + "\n")


def fix_textdml_config(staging: Path, base: str | None) -> None:
    file = staging / TEXTDML_CONFIG
    if not file.exists():
        return
    config = json.loads(file.read_text())
    for section in (config, config.get("adapter") or {}, config.get("merged_from_adapter") or {}):
        for key in ("name", "base_model"):
            value = section.get(key)
            if isinstance(value, str) and is_local_path(value):
                section[key] = (base if key == "base_model" else None) or hub_id_for(value) or Path(value).name
    file.write_text(json.dumps(config, indent=2) + "\n")


def fix_card(staging: Path, repo_id: str, base: str | None) -> None:
    """Name the repository in the usage examples; keep only a Hub id as ``base_model``."""
    from huggingface_hub import ModelCard, ModelCardData

    readme = staging / MODEL_CARD
    if readme.exists():
        card = read_card(readme)
    else:  # a model saved without a card (e.g. by sentence-transformers): a minimal one
        dual_config = staging / DUAL_ENCODER_CONFIG
        whole = json.loads(dual_config.read_text()).get("whole_model") if dual_config.exists() else None
        card = ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n\n# {repo_id.split('/')[-1]}\n")
        card.data.library_name = ({"open_clip": "open_clip", "hf_clip": "transformers", "hf_siglip": "transformers"}
                                  .get(whole, "pytorch") if dual_config.exists() else "sentence-transformers")
        card.data.tags = ["textdml", "image-text" if dual_config.exists() else "sentence-transformers"]
    current = card.data.base_model
    if isinstance(current, str) and not looks_like_hub_id(current):
        card.data.base_model = base
    elif current is None and base is not None:
        card.data.base_model = base
    if card.data.base_model and (staging / ADAPTER_CONFIG).exists():
        card.data.base_model_relation = "adapter"
    card.text = re.sub(r"path/to/[\w.-]+", repo_id, card.text)
    card.save(readme)


def push_to_hub(model_dir: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
                token: str | None = None, dry_run: bool = False, staging_dir: str | os.PathLike | None = None,
                commit_message: str | None = None, base_model: str | None = None, force: bool = False) -> PushResult:
    """Upload a saved textdml / sentence-transformers model folder to ``repo_id`` on the Hub.

    Args:
        model_dir: a folder written by training (``final/``, ``best/``) or by ``save_pretrained``.
        repo_id: ``namespace/name``; created (private if asked) when it does not exist.
        private: create the repository private.
        revision: a branch to push to (created from main when missing); default main.
        token: a Hub token; default the one ``huggingface_hub`` finds (HF_TOKEN, ``hf auth login``).
        dry_run: stage the folder and list it; nothing is sent and no token is needed.
        staging_dir: where to stage (default a temporary folder, or ``<model_dir>-hub`` for a dry run).
        commit_message: the commit message (default "Upload <name> with textdml").
        base_model: the Hub id of the base model, when the card and adapter cannot tell it.
        force: replace ``staging_dir`` (or ``<model_dir>-hub``) even when it holds something textdml
            push did not stage there (a staged folder of an earlier push is replaced anyway).

    Returns:
        The staged folder, its files, and (unless a dry run) the commit URL.
    """
    import huggingface_hub

    model_dir = Path(model_dir)
    check_repo_id(repo_id)
    check_model_folder(model_dir)
    found_token = None if dry_run else find_token(token)
    temporary = staging_dir is None and not dry_run  # removed after the upload, whatever happens
    if staging_dir is not None:
        staging = Path(staging_dir)
    elif dry_run:
        staging = Path(f"{model_dir.resolve()}-hub")
    else:
        staging = Path(tempfile.mkdtemp(prefix="textdml-push-")) / "repo"
    try:
        files = stage_folder(model_dir, staging, repo_id, base_model, force)
        if found_token:
            leaking = [name for name, _ in files if (staging / name).suffix in TEXT_SUFFIXES
                       and found_token in (staging / name).read_text(errors="replace")]
            if leaking:  # never send a credential, whatever wrote it there
                raise ValueError(f"{model_dir}: {leaking} contain your Hugging Face token; remove it, nothing was "
                                 "uploaded")
        result = PushResult(repo_id, staging, files, revision=revision)
        if dry_run:
            return result
        huggingface_hub.create_repo(repo_id, private=private, exist_ok=True, token=found_token)
        if revision:
            huggingface_hub.create_branch(repo_id, branch=revision, exist_ok=True, token=found_token)
        commit = huggingface_hub.upload_folder(
            repo_id=repo_id, folder_path=str(staging), revision=revision, token=found_token, ignore_patterns=[MARKER],
            commit_message=commit_message or f"Upload {model_dir.name} with textdml",
        )
    finally:
        if temporary:
            shutil.rmtree(staging.parent, ignore_errors=True)
    result.url = getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}"
    logger.info("pushed %d files to %s", len(files), result.url)
    return result


def format_listing(result: PushResult) -> str:
    """The staged files, one a line with its size, and where they are."""
    total = sum(size for _, size in result.files)
    lines = [f"{size:>12,}  {name}" for name, size in result.files]
    lines.append(f"{total:>12,}  bytes in {len(result.files)} files, staged in {result.folder}")
    return "\n".join(lines)


def __getattr__(name: str) -> Any:
    # push_model moved to textdml.models.saving (it saves a model object, then pushes the folder).
    # Resolved by name on first use, kept for one release: hub sits below models and imports none of it.
    if name == "push_model":
        import importlib
        import warnings

        warnings.warn("textdml.hub.push.push_model moved to textdml.models.saving.push_model", DeprecationWarning,
                      stacklevel=2)
        return importlib.import_module("textdml.models.saving").push_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
