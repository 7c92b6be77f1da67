"""Secrets never reach run_config.json, checkpoints, the model card or the logs (issue 16)."""

from __future__ import annotations

import logging

from datasets import Dataset

from textdml.config import load_run_config
from textdml.redaction import SecretFilter, environment_secrets, is_secret_key, mask_text, redact, secret_values
from textdml.training.loop import train

SECRET = "qd-4f8c1e0b9a7d"


def test_secret_names_are_recognised():
    for key in ("api_key", "apiKey", "hf_token", "client_secret", "password", "access-key", "auth", "credentials"):
        assert is_secret_key(key), key
    for key in ("max_tokens_per_batch", "pad_token", "id_field", "keyword", "name", "tokenizer"):
        assert not is_secret_key(key), key


def test_redact_masks_nested_values_and_url_passwords():
    config = {"index": {"api_key": SECRET, "url": f"https://me:{SECRET}@q.example.com:6333/x"},
              "loss": {"name": "info_nce"}, "extra": [{"token": SECRET}], "unset": {"api_key": None}}
    redacted = redact(config)
    assert SECRET not in str(redacted)
    assert redacted["index"]["url"] == "https://me:***@q.example.com:6333/x" and redacted["unset"]["api_key"] is None
    assert secret_values(config) == {SECRET}
    assert mask_text(f"refused {SECRET}", {SECRET}) == "refused ***"


def test_no_saved_file_holds_the_key(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    data = Dataset.from_dict({"anchor": [f"question {i}" for i in range(8)], "positive": [f"answer {i}" for i in range(8)]})
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={run}", "training.batch_size=4", "training.max_steps=1",
                                    "training.save_steps=1", "training.show_progress_bar=false",
                                    f"index.api_key={SECRET}", "index.path=null",
                                    f"index.url=https://me:{SECRET}@q.example.com"])
    train(config, train_dataset=data)
    written = [p for p in run.rglob("*") if p.is_file() and p.suffix in (".json", ".md", ".jsonl")]
    assert {"run_config.json", "README.md", "trainer_state.json"} <= {p.name for p in written}
    assert any(p.parent.name.startswith("checkpoint-") and p.name == "run_config.json" for p in written)
    for path in written:
        assert SECRET not in path.read_text(), path
    assert '"api_key": "***"' in (run / "run_config.json").read_text()


def test_the_model_card_masks_secret_hyperparameters():
    from textdml.hub.model_card import render_model_card

    config = load_run_config(None, ["train.path=x", f"loss={{name: info_nce, hf_token: {SECRET}}}"])
    card = render_model_card(config, object(), [])
    assert SECRET not in card and '"hf_token": "***"' in card


def test_log_filter_masks_secret_values(caplog):
    log_filter = SecretFilter({SECRET})
    logger = logging.getLogger("textdml.test_redaction")
    caplog.handler.addFilter(log_filter)
    try:
        with caplog.at_level(logging.INFO):
            logger.warning("connecting with %s", SECRET)
    finally:
        caplog.handler.removeFilter(log_filter)
    assert SECRET not in caplog.text and "connecting with ***" in caplog.text


def test_secret_environment_variables_are_masked_too():
    environ = {"QDRANT_API_KEY": SECRET, "HF_TOKEN": "hf_abcdef", "PATH": "/usr/bin", "TOKENIZERS_PARALLELISM": "false"}
    assert environment_secrets(environ) == {SECRET, "hf_abcdef"}


def test_the_working_folder_is_not_a_secret(tmp_path):
    environ = {"PWD": str(tmp_path), "OLDPWD": "/", "SSH_AUTH_SOCK": "/tmp/ssh-x/agent.1",
               "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path), "QDRANT_API_KEY": SECRET}
    assert environment_secrets(environ) == {SECRET}


def test_url_passwords_are_masked_in_free_text_and_log_tracebacks(caplog):
    assert mask_text("GET http://me:pw@h:6333/x and https://a:b@c", set()) == "GET http://me:***@h:6333/x and https://a:***@c"
    assert mask_text("http://h:6333/collections/x@1", set()) == "http://h:6333/collections/x@1"  # no password
    logger = logging.getLogger("textdml.test_redaction")
    caplog.handler.addFilter(log_filter := SecretFilter(set()))
    try:
        try:
            raise ConnectionError("refused by http://me:pw@h:6333")
        except ConnectionError:
            logger.exception("upsert failed")
    finally:
        caplog.handler.removeFilter(log_filter)
    assert "pw@" not in caplog.text and "http://me:***@h:6333" in caplog.text
