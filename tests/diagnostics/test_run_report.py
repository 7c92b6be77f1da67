from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from textdml.cli import main
from textdml.config import load_run_config
from textdml.diagnostics.report import write_report
from textdml.diagnostics.snapshot import EvalSnapshot
from textdml.evaluation.build import LabelledRetrievalEvaluator
from textdml.training.loop import train

WORDS = "cat dog bird fish tree river stone cloud rain snow wind fire".split()


def labelled_rows(classes: int, per_class: int, offset: int = 0) -> Dataset:
    texts, labels = [], []
    for c in range(offset, offset + classes):
        for i in range(per_class):
            texts.append(f"{WORDS[c % len(WORDS)]} {WORDS[(c + i + 3) % len(WORDS)]} number {i}")
            labels.append(f"class{c}")
    return Dataset.from_dict({"anchor": texts, "label": labels})


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A 4-step labelled run (triplet + batch-hard miner) with evaluation at steps 2 and 4."""
    output = tmp_path_factory.mktemp("report_run") / "run"
    eval_data = labelled_rows(4, 4, offset=6)
    config = load_run_config(None, [
        "train.path=in-memory", f"model.name_or_path={tiny_model_dir}", f"training.output_dir={output}",
        "training.batch_size=8", "training.sampler=m_per_class", "training.m_per_class=2", "loss.name=triplet",
        "miner.name=batch_hard", "training.max_steps=4", "training.logging_steps=1", "training.eval_steps=2",
        "training.learning_rate=1e-3", "training.show_progress_bar=false"])
    train(config, train_dataset=labelled_rows(6, 4),
          evaluator=LabelledRetrievalEvaluator(list(eval_data["anchor"]), list(eval_data["label"])))
    return output


def image_sources(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]+)"', page)


def test_every_run_writes_a_self_contained_report(tiny_run):
    page = (tiny_run / "report.html").read_text()
    for title in ("Loss and learning rate", "Evaluation metrics over steps", "Embedding health",
                  "positive vs negative similarities", "Eval embeddings in 2-D", "Preflight"):
        assert title in page
    sources = image_sources(page)
    assert len(sources) == 5 and all(src.startswith("data:image/png;base64,") for src in sources)
    # Nothing is fetched: no URL, no script.
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "coloured by class (4 classes)" in page
    findings = json.loads((tiny_run / "preflight.json").read_text())["findings"]
    assert not [f for f in findings if f["level"] != "ok"], findings  # m-per-class batches, margins not yet met
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    health = [r for r in records if "loss" in r]
    for key in ("health_alignment", "health_uniformity", "health_variance", "health_sim_gap", "health_margin_met",
                "health_mined", "health_grad_norm"):
        assert all(key in r for r in health), key
    before = EvalSnapshot.load(tiny_run / "diagnostics" / "eval_before.npz")
    assert len(before.positive) == 4 * 6 and len(before.negative) == 16 * 15 // 2 - 24 and before.grouping == "class"


def test_report_cli_writes_where_asked(tiny_run, tmp_path, capsys):
    target = tmp_path / "page.html"
    assert main(["report", str(tiny_run), "--output", str(target)]) == 0
    assert str(target) in capsys.readouterr().out and target.read_text().startswith("<!DOCTYPE html>")


def test_report_overwrites_only_a_report(tiny_run, tmp_path, capsys):
    """Issue 20: `--output <run>/final/model.safetensors` overwrote the weights with the page."""
    from tests.cli_checks import error_line

    weights = tiny_run / "final" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["report", str(tiny_run), "--output", str(weights)]) == 2
    line = error_line(capsys, "report")
    assert str(weights) in line and "is not a report textdml wrote" in line and "--force" in line
    assert weights.read_bytes() == before
    assert main(["report", str(tiny_run), "--output", str(tiny_run / "final")]) == 2
    assert "is a folder" in error_line(capsys, "report")
    assert main(["report", str(tiny_run)]) == 0  # the run's own report.html: rewritten
    notes = tmp_path / "notes.html"
    notes.write_text("<p>mine</p>")
    assert main(["report", str(tiny_run), "--output", str(notes)]) == 2 and notes.read_text() == "<p>mine</p>"
    assert main(["report", str(tiny_run), "--output", str(notes), "--force"]) == 0
    assert "Loss and learning rate" in notes.read_text()


def test_a_folder_without_metrics_is_an_error_naming_the_file(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "missing")


def test_a_run_in_progress_shows_what_exists(tiny_run, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    lines = (tiny_run / "metrics.jsonl").read_text().splitlines()[:2]
    (partial / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 3, "lo')  # a half-written line
    page = write_report(partial).read_text()
    assert "in progress or stopped at step 2" in page and "Loss and learning rate" in page
    assert "Embedding health" in page and len(image_sources(page)) == 2


def test_one_class_projection_has_no_colours_and_says_so(tmp_path):
    (tmp_path / "final").mkdir()
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5, "lr": 1e-5}) + "\n")
    rng = np.random.default_rng(0)
    EvalSnapshot(rng.uniform(0, 1, 10), rng.uniform(-1, 0, 10), rng.normal(size=(12, 8)),
                 np.array(["only"] * 12), "class").save(tmp_path / "diagnostics" / "eval_after.npz")
    page = write_report(tmp_path).read_text()
    assert "single class: the projection is drawn without colours" in page and "one class: no colours" in page


# ------------------------------------------------------------------------------ real browser
def find_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_the_report_loads_in_a_headless_browser_with_every_image_decoded(tiny_run, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no chromium on this machine: `apt-get install chromium` (scripts/setup.sh test does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (the test extra has it)")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    errors: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=browser,
                                                                args=args, headless=True)
        try:
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: errors.append(f"fetched {request.url}")
                    if not request.url.startswith(("file:", "data:")) else None)
            page.goto((tiny_run / "report.html").as_uri(), wait_until="load")
            images = page.evaluate("""() => Promise.all(Array.from(document.images).map(async (img) => {
                try { await img.decode(); } catch (e) { return [img.alt, 0, 0]; }
                return [img.alt, img.naturalWidth, img.naturalHeight];
            }))""")
        finally:
            context.close()
    assert errors == []
    assert len(images) == 5 and all(width > 100 and height > 100 for _, width, height in images), images


@pytest.mark.slow  # two towers, two steps, an evaluation: several seconds on a CPU
def test_image_text_runs_get_the_same_page_with_image_text_metrics(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    from tests.fakes_vision import write_colour_images

    arch = "textdml-tiny-report-clip"
    spec = {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / f"{arch}.json").write_text(json.dumps(spec))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    rows = write_colour_images(tmp_path / "images", per_colour=4)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"image": r["image"], "text": r["text"]}) + "\n" for r in rows))
    run = tmp_path / "run"
    assert main(["train", "--config", str(Path(__file__).parents[2] / "recipes/image_text/open_clip_vit_b32_emoji.yaml"),
                 f"model.dual.arch={arch}", f"train.path={data}", f"eval.data.path={data}", "training.max_steps=2",
                 "training.batch_size=8", "training.logging_steps=1", "training.eval_steps=2",
                 f"training.output_dir={run}", "training.show_progress_bar=false"]) == 0
    page = (run / "report.html").read_text()
    assert "images and captions" in page and "i2t_recall@1" in page
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("health_logit_scale" in r and "health_sim_gap" in r for r in records if "loss" in r)
    assert EvalSnapshot.load(run / "diagnostics" / "eval_after.npz").grouping == "modality"
    findings = json.loads((run / "preflight.json").read_text())["findings"]
    assert findings and not [f for f in findings if "could not run" in f["message"]], findings
