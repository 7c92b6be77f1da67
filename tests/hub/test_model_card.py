from __future__ import annotations

import json

import yaml
from huggingface_hub import ModelCard

from tests.conftest import minilm_folder
from tests.hub.conftest import run_config, write_pairs
from textdml.config import load_run_config
from textdml.hub.base_model import hub_id_for
from textdml.hub.model_card import create_model_card, loss_curve
from textdml.losses.info_nce import InfoNCELoss


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_has_valid_metadata_model_index_and_body(run_dir):
    text = (run_dir / "final" / "README.md").read_text()
    metadata = front_matter(text)
    assert metadata["library_name"] == "sentence-transformers" and metadata["pipeline_tag"] == "sentence-similarity"
    assert {"textdml", "loss:TripletLoss", "miner:BatchHardMiner"} <= set(metadata["tags"])
    assert "base_model" not in metadata  # a random local model has no Hub id, and no path is written instead
    results = metadata["model-index"][0]["results"]
    metrics = {m["type"]: m["value"] for r in results for m in r["metrics"]}
    assert "ndcg_at_10" in metrics and all(0 <= v <= 1 for v in metrics.values())
    names = {m["type"]: m["name"] for r in results for m in r["metrics"]}
    assert names["ndcg_at_10"] == "NDCG@10" and names["recall_at_1"] == "Recall@1"
    assert results[0]["dataset"]["name"] == "eval.jsonl"
    assert metadata["widget"][0]["source_sentence"] == "question number 0"
    card = ModelCard(text)  # huggingface_hub reads it back
    assert card.data.eval_results and card.data.eval_results[0].metric_value == metrics[card.data.eval_results[0].metric_type]
    for section in ("## Usage", "SentenceTransformer(", "Embedder.from_pretrained(", "### Loss curve", "## Evaluation",
                    "| learning_rate | 0.001 |", "### Time and hardware", "peak process memory", "## Framework versions",
                    "- transformers:", "@software{textdml", "schroff2015facenet", "hermans2017defense", '"margin": 0.2',
                    "| in-memory | 24 |", "Evaluation data: eval.jsonl, split `train` (16 queries, 16 documents)"):
        assert section in text, section
    assert str(run_dir.parent) not in text and "/tmp" not in text  # no local path leaks


def test_base_model_hub_id_from_a_local_folder(tmp_path):
    assert hub_id_for(minilm_folder()) == "sentence-transformers/all-MiniLM-L6-v2"  # from its own card
    assert hub_id_for("org/model") == "org/model"
    cached = tmp_path / "hub" / "models--org--model-name" / "snapshots" / "abc123"
    cached.mkdir(parents=True)
    assert hub_id_for(cached) == "org/model-name"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text('{"_name_or_path": "/home/me/models/x"}')
    assert hub_id_for(plain) is None and hub_id_for(tmp_path / "missing") is None


def test_card_names_the_hub_base_of_a_packaged_model_and_no_path(tmp_path):
    config = load_run_config(None, ["train.path=data/pairs.jsonl", f"model.name_or_path={minilm_folder()}",
                                    f"training.output_dir={tmp_path / 'out'}", "model.lora.r=4"])
    text = str(create_model_card(config, InfoNCELoss(), [{"step": 1, "loss": 1.0, "lr": 1e-3}], folder=tmp_path))
    metadata = front_matter(text)
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "datasets" not in metadata  # data/pairs.jsonl is a file name, not a Hub data set
    assert "lora" in metadata["tags"] and "**LoRA adapters**" in text and "rank 4" in text
    assert str(minilm_folder()) not in text and str(tmp_path) not in text


def test_image_text_card_uses_a_library_the_hub_knows(tmp_path):
    config = load_run_config(None, ["train.path=hf-org/captions", "model.kind=dual",
                                    "model.dual={kind: open_clip, arch: ViT-B-32, pretrained: /ckpt/open_clip.bin}",
                                    f"training.output_dir={tmp_path / 'clip'}"])
    text = str(create_model_card(config, InfoNCELoss(), [], folder=tmp_path))
    metadata = front_matter(text)
    assert metadata["library_name"] == "open_clip" and metadata["pipeline_tag"] == "zero-shot-image-classification"
    assert metadata["datasets"] == ["hf-org/captions"]
    assert "open_clip.create_model_and_transforms(\"ViT-B-32\"" in text and "/ckpt" not in text


def test_loss_curve_is_thinned_and_keeps_the_last_step():
    records = [{"step": i, "loss": 1 / i} for i in range(1, 101)]
    rows = loss_curve(records)
    assert len(rows) <= 21 and rows[0]["step"] == 1 and rows[-1]["step"] == 100


def test_card_lists_changed_settings_first_and_hides_those_that_do_not_apply(run_dir):
    text = (run_dir / "final" / "README.md").read_text()
    changed, _, defaults = text.partition("<details><summary>Default hyperparameters</summary>")
    assert "| learning_rate | 0.001 |" in changed and "| batch_size | 8 |" in changed and "| max_steps | 3 |" in changed
    assert "| weight_decay | 0.01 |" in defaults and "| weight_decay |" not in changed
    # A random sampler has no m_per_class; resuming, overwriting and bars say nothing about the model.
    for hidden in ("m_per_class", "force_resume", "overwrite_output_dir", "resume_from_checkpoint",
                   "show_progress_bar", "run_name", "multi_dataset_strategy", "save_adapter"):
        assert f"| {hidden} |" not in text, hidden


def test_card_shows_training_samples_token_statistics_and_architecture(run_dir):
    text = (run_dir / "final" / "README.md").read_text()
    assert "| `anchor` | `positive` |" in text and "| question number 0 | the answer is 0 |" in text
    # "question number 0": [CLS] question number 0 [SEP]
    assert "Tokens per text (first 24 rows, before truncation)" in text and "| `anchor` | 5 | " in text
    assert "### Architecture" in text and "(0): Transformer(" in text and '"architecture": "BertModel"' in text
    assert "(1): Pooling(" in text


def test_a_run_evaluated_on_start_shows_base_against_trained_under_its_name(tiny_model_dir, tmp_path):
    """``training.eval_on_start``: the card and the report compare the starting model with the trained one."""
    from tests.training.loop_inputs import pairs_dataset
    from textdml.diagnostics.report import write_report
    from textdml.evaluation.build import build_evaluator
    from textdml.training.callbacks import Callback
    from textdml.training.loop import train

    class Saves(Callback):
        def __init__(self):
            self.saves = []

        def on_save(self, path, kind, state):
            self.saves.append((kind, state.global_step))

    saves = Saves()
    config = run_config(tiny_model_dir, tmp_path / "run", write_pairs(tmp_path / "eval.jsonl"),
                        "training.eval_on_start=true", "training.eval_steps=null",
                        "training.run_name='demo: tiny BERT fine-tuned on pairs'")
    train(config, evaluator=build_evaluator(config.eval), train_dataset=pairs_dataset(), callbacks=[saves])
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if "eval_ndcg@10" in r]
    assert [r["step"] for r in evaluations] == [0, 3]
    text = (run / "final" / "README.md").read_text()
    assert text.split("---\n", 2)[2].lstrip().startswith("# demo: tiny BERT fine-tuned on pairs")
    assert front_matter(text)["model-index"][0]["name"] == "demo: tiny BERT fine-tuned on pairs"
    assert 'SentenceTransformer("path/to/demo-tiny-bert-fine-tuned-on-pairs")' in text  # no colon or space
    base, trained = evaluations[0]["eval_ndcg@10"], evaluations[1]["eval_ndcg@10"]
    assert "| metric | base model | trained | change |" in text
    assert f"| NDCG@10 | {base:.4f} | {trained:.4f} | {trained - base:+.4f} |" in text
    # The starting model is no candidate for best/: only what the training produced is.
    assert ("best", 0) not in saves.saves and ("best", 3) in saves.saves
    page = write_report(run).read_text()
    assert "<title>textdml run: demo: tiny BERT fine-tuned on pairs</title>" in page
    assert "step 0 (before training)" in page and "Evaluation metrics over steps" in page
