from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest

from tests.cli_checks import error_line
from tests.hub.conftest import DUMMY_TOKEN, train_run
from tests.models.test_dual_encoder import tiny_open_clip_arch  # noqa: F401  (a fixture)
from textdml.cli import main
from textdml.hub.push import push_to_hub
from textdml.outputs import MARKER


class FakeHub:
    """Stands in for huggingface_hub's network calls and records what would be sent."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])  # read now: a temporary staging folder is removed afterwards
        ignored = kwargs.get("ignore_patterns") or []  # as huggingface_hub filters them
        files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
        self.uploaded = {name: p.read_bytes() for name, p in files.items()
                         if not any(fnmatch.fnmatch(name, pattern) for pattern in ignored)}
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/1"})()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    fake = FakeHub()
    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(huggingface_hub, name, getattr(fake, name))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", DUMMY_TOKEN)
    return fake


def test_push_sends_the_model_card_and_configs_but_no_run_files(run_dir, hub):
    result = push_to_hub(run_dir / "final", "alice/tiny-model", private=True, revision="v1")
    names = [name for name, _ in hub.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[0][1] == {"repo_id": "alice/tiny-model", "private": True, "exist_ok": True, "token": DUMMY_TOKEN}
    upload = hub.calls[2][1]
    assert upload["repo_id"] == "alice/tiny-model" and upload["revision"] == "v1" and upload["token"] == DUMMY_TOKEN
    assert {"model.safetensors", "modules.json", "config.json", "tokenizer.json", "README.md",
            "1_Pooling/config.json", "config_sentence_transformers.json"} <= set(hub.uploaded)
    assert not any(n.startswith(("checkpoints", "tensorboard")) or n in ("metrics.jsonl", "run_config.json", MARKER)
                   for n in hub.uploaded)
    card = hub.uploaded["README.md"].decode()
    assert 'SentenceTransformer("alice/tiny-model")' in card and "path/to" not in card
    assert result.url.endswith("/commit/1") and not Path(upload["folder_path"]).exists()


def test_dry_run_writes_the_exact_folder_and_lists_it(run_dir, hub, capsys):
    out = run_dir.parent / "staged"
    assert main(["push", str(run_dir / "final"), "--repo-id", "alice/tiny-model", "--dry-run", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model.safetensors" in printed and "dry run: nothing was uploaded" in printed
    assert hub.calls == [] and (out / "model.safetensors").exists() and (out / "README.md").exists()
    push_to_hub(run_dir / "final", "alice/tiny-model")
    # The folder holds what is sent, plus the hidden marker by which a later push knows it as its own.
    staged = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(hub.uploaded) == staged - {MARKER} and MARKER in staged


def test_the_token_is_written_nowhere(tiny_model_dir, tmp_path, hub, monkeypatch):
    # Train (with trackers, card, checkpoints), stage a dry run and push: the token from the
    # environment must not appear in any file any of it wrote.
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run = train_run(tiny_model_dir, tmp_path, "training.save_steps=2", "training.report_to=[tensorboard, mlflow]")
    push_to_hub(run / "final", "alice/tiny-model", dry_run=True, staging_dir=tmp_path / "staged")
    push_to_hub(run / "final", "alice/tiny-model")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20
    assert [p for p in written if DUMMY_TOKEN.encode() in p.read_bytes()] == []
    assert not any(DUMMY_TOKEN.encode() in content for content in hub.uploaded.values())


def test_push_without_a_token_says_how_to_log_in(run_dir, hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ValueError, match="hf auth login"):
        push_to_hub(run_dir / "final", "alice/tiny-model")
    assert main(["push", str(run_dir / "final"), "--repo-id", "alice/tiny-model"]) == 2
    assert "textdml push: error: no Hugging Face token found, nothing was uploaded" in capsys.readouterr().err
    assert hub.calls == []


@pytest.mark.parametrize("repo_id", ["tiny-model", "alice/tiny/model", "-alice/model", "alice/mo del", "a--b/model",
                                     "alice/model.git", "/model"])
def test_repo_id_must_be_namespace_slash_name(run_dir, hub, repo_id):
    with pytest.raises(ValueError, match="must look like namespace/name"):
        push_to_hub(run_dir / "final", repo_id)
    assert hub.calls == []


def test_a_folder_that_is_no_model_save(run_dir, hub, tmp_path):
    with pytest.raises(ValueError, match=r"It looks like a run folder: push .*final"):
        push_to_hub(run_dir, "alice/tiny-model")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a textdml / sentence-transformers model save"):
        push_to_hub(tmp_path / "notes", "alice/tiny-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_to_hub(tmp_path / "missing", "alice/tiny-model")
    assert hub.calls == []


def test_an_adapter_is_pushed_as_an_adapter_with_a_hub_base(tiny_model_dir, tmp_path, hub):
    run = train_run(tiny_model_dir, tmp_path, "model.lora.r=4", "model.lora.target_modules=[query, value]",
                    "training.save_adapter=true")
    # The tiny base is a local folder with no Hub id: pushing it would publish an adapter nobody can load.
    with pytest.raises(ValueError, match="--base-model"):
        push_to_hub(run / "final", "alice/tiny-adapter")
    assert hub.calls == []
    push_to_hub(run / "final", "alice/tiny-adapter", base_model="org/tiny-base")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(hub.uploaded)
    assert "model.safetensors" not in hub.uploaded
    assert json.loads(hub.uploaded["adapter_config.json"])["base_model_name_or_path"] == "org/tiny-base"
    assert json.loads(hub.uploaded["textdml_config.json"])["adapter"]["base_model"] == "org/tiny-base"
    card = hub.uploaded["README.md"].decode()
    assert "base_model: org/tiny-base" in card and "base_model_relation: adapter" in card
    assert str(tiny_model_dir) not in b"".join(hub.uploaded.values()).decode(errors="replace")


def test_training_pushes_at_the_end_and_checks_the_hub_first(tiny_model_dir, tmp_path, hub, monkeypatch):
    run = train_run(tiny_model_dir, tmp_path / "ok", "training.push_to_hub=alice/pushed", "training.hub_private=true")
    assert hub.calls[0] == ("create_repo", {"repo_id": "alice/pushed", "private": True, "exist_ok": True,
                                            "token": DUMMY_TOKEN})
    assert "model.safetensors" in hub.uploaded and (run / "final").exists()
    hub.calls.clear()
    with pytest.raises(ValueError, match="must look like namespace/name"):
        train_run(tiny_model_dir, tmp_path / "bad", "training.push_to_hub=pushed")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ValueError, match="hf auth login"):
        train_run(tiny_model_dir, tmp_path / "no-token", "training.push_to_hub=alice/pushed")
    assert hub.calls == [] and not (tmp_path / "bad" / "run").exists() and not (tmp_path / "no-token" / "run").exists()


def test_an_image_text_model_without_a_card_gets_one(tmp_path, hub, tiny_open_clip_arch):  # noqa: F811
    from textdml.models.dual_encoder import create_dual_encoder

    folder = create_dual_encoder({"kind": "open_clip", "arch": tiny_open_clip_arch}).save_pretrained(tmp_path / "clip")
    result = push_to_hub(folder, "alice/tiny-clip", dry_run=True)
    assert "open_clip_model.safetensors" in dict(result.files) and result.folder == Path(f"{folder.resolve()}-hub")
    card = (result.folder / "README.md").read_text()
    assert "library_name: open_clip" in card and "image-text" in card


def test_a_model_object_pushes_itself(tiny_embedder, tmp_path, hub):
    tiny_embedder.push_to_hub("alice/tiny-object", private=True)
    assert hub.calls[0][1]["private"] is True
    assert {"model.safetensors", "modules.json", "README.md"} <= set(hub.uploaded)
    assert "library_name: sentence-transformers" in hub.uploaded["README.md"].decode()
    with pytest.raises(ValueError, match="needs staging_dir"):
        tiny_embedder.push_to_hub("alice/tiny-object", dry_run=True)


def test_staging_never_empties_a_foreign_folder_and_a_dry_run_keeps_the_run(run_dir, hub, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="was not written by textdml push .*--output, or pass --force"):
        push_to_hub(run_dir / "final", "alice/tiny-model", dry_run=True, staging_dir=precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    result = push_to_hub(run_dir / "final", "alice/tiny-model", dry_run=True)
    assert result.folder == Path(f"{(run_dir / 'final').resolve()}-hub") and (result.folder / "README.md").exists()
    assert (run_dir / "final" / "model.safetensors").exists() and (run_dir / "metrics.jsonl").exists()
    push_to_hub(run_dir / "final", "alice/tiny-model", dry_run=True)  # an earlier staged folder is replaced


def test_a_broken_card_is_named(run_dir, hub):
    (run_dir / "final" / "README.md").write_text("---\nbase_model: [unclosed\n---\n\n# x\n")
    with pytest.raises(ValueError, match=r"README.md is not a valid model card"):
        push_to_hub(run_dir / "final", "alice/tiny-model")
    assert hub.calls == []


def test_a_dry_run_never_replaces_what_it_did_not_stage(run_dir, hub, tmp_path, capsys):
    """Issue 20: --output naming another model folder (with a file of the user's) deleted it."""
    other = tmp_path / "other-model"
    shutil.copytree(run_dir / "final", other)
    (other / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    push = ["push", str(run_dir / "final"), "--repo-id", "alice/tiny-model", "--dry-run", "--output", str(other)]
    assert main(push) == 2
    line = error_line(capsys, "push")
    assert str(other) in line and "was not written by textdml push" in line and "--force" in line
    assert {p: p.read_bytes() for p in other.rglob("*") if p.is_file()} == before
    assert main([*push, "--force"]) == 0  # asked for: replaced by the staged copy
    assert not (other / "notes.txt").exists() and (other / MARKER).exists()
    capsys.readouterr()
    assert main(push) == 0  # its own staged folder: replaced again without --force

    (other / "notes.txt").write_text("added after the dry run")
    assert main(push) == 2 and "holds notes.txt, added or changed since textdml push wrote it" in error_line(capsys, "push")
    (other / "notes.txt").unlink()
    (other / "README.md").write_text("edited by hand")
    assert main(push) == 2 and "holds README.md, added or changed" in error_line(capsys, "push")
    assert (other / "README.md").read_text() == "edited by hand"


@pytest.mark.parametrize("where", ["run", "model", "inside"])
def test_staging_over_or_inside_the_model_is_refused_even_with_force(run_dir, hub, where, capsys):
    output = {"run": run_dir, "model": run_dir / "final", "inside": run_dir / "final" / "staged"}[where]
    weights = (run_dir / "final" / "model.safetensors").read_bytes()
    assert main(["push", str(run_dir / "final"), "--repo-id", "alice/tiny-model", "--dry-run", "--output",
                 str(output), "--force"]) == 2
    assert "must be a folder apart from the model folder" in error_line(capsys, "push")
    assert (run_dir / "final" / "model.safetensors").read_bytes() == weights and (run_dir / "metrics.jsonl").exists()
