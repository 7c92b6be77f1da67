"""``textdml report <run_dir>``: one self-contained HTML page about a training run.

Loss and learning-rate curves, evaluation metrics over steps, the embedding-health metrics,
histograms of positive vs negative similarities on the eval set before and after training, a
2-D projection of eval embeddings (coloured by class when there are classes), and the preflight
findings. Plots are inlined PNGs: no server, no network, no script. Written at the end of every
run (``<output_dir>/report.html``); for a run still in progress it shows what exists.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from textdml.diagnostics.health import COLLAPSE_THRESHOLD
from textdml.diagnostics.plots import (
    plot_metric_grid,
    plot_projection,
    plot_similarity_histograms,
    plot_training_curves,
)
from textdml.diagnostics.preflight import PreflightReport
from textdml.diagnostics.snapshot import EvalSnapshot

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
TITLE_START = "textdml run: "
# How every report page begins: what `textdml report` may overwrite (see check_report_path).
PAGE_START = f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{TITLE_START}'
MAX_EVAL_PLOTS = 12
MAX_COLOURED_GROUPS = 60  # above this a colour per class says nothing

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; } td, th { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: left; }
.ok { color: #1a7f37; } .warning { color: #9a6700; } .error { color: #cf222e; font-weight: bold; }
.note { background: #fff8c5; padding: .5em .8em; border-radius: 4px; margin: .4em 0; }
img { max-width: 100%; } code { background: #f4f4f4; padding: 0 .2em; }
"""


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``; a half-written last line (a run in progress) is skipped."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} has no metrics.jsonl: it is not a textdml run folder (training.output_dir), or the run "
            "has not logged its first step yet (see training.logging_steps)")
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if not records:
        raise ValueError(f"{path} is empty: the run has not logged a step yet; run the report again later")
    return records


def numeric_keys(records: list[dict[str, Any]], prefix: str) -> list[str]:
    keys = dict.fromkeys(k for r in records for k, v in r.items()
                         if k.startswith(prefix) and isinstance(v, (int, float)) and not isinstance(v, bool))
    return list(keys)


def collect_report(run_dir: str | Path) -> dict[str, Any]:
    """Everything the page shows, read from the run folder (no plotting)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist: pass a training.output_dir")
    records = read_metrics(run_dir)
    config_path = run_dir / "run_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    preflight_path = run_dir / "preflight.json"
    snapshots = {}
    for when in ("before", "after"):
        path = run_dir / "diagnostics" / f"eval_{when}.npz"
        if path.exists():
            snapshots[when] = EvalSnapshot.load(path)
    return {
        "run_dir": run_dir,
        "records": records,
        "train": [r for r in records if "loss" in r],
        "eval": [r for r in records if any(k.startswith("eval_") for k in r)],
        "config": config,
        "preflight": PreflightReport.load(preflight_path) if preflight_path.exists() else None,
        "snapshots": snapshots,
        "finished": (run_dir / "final").is_dir(),
    }


def write_report(run_dir: str | Path, output: str | Path | None = None, force: bool = False) -> Path:
    """Write the HTML report of a run folder (default ``<run_dir>/report.html``); returns its path.

    An existing ``output`` is overwritten only when it is a report page itself, or with ``force``.

    Raises:
        FileNotFoundError: the folder or its ``metrics.jsonl`` does not exist.
        FileExistsError: ``output`` is something else than a report page (a model's weights...).
    """
    path = Path(output) if output is not None else Path(run_dir) / REPORT_NAME
    check_report_path(path, force)
    data = collect_report(run_dir)
    path.write_text(render(data), encoding="utf-8")
    return path


def check_report_path(path: Path, force: bool) -> None:
    from textdml.outputs import refuse

    if path.is_dir():
        raise IsADirectoryError(f"report output {str(path)!r} is a folder: name a file, e.g. {path / REPORT_NAME}")
    if path.exists() and not force and not is_report_page(path):
        raise refuse(path, "exists and is not a report textdml wrote", "name another file with --output")


def is_report_page(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(len(PAGE_START)) == PAGE_START.encode()


def figure(title: str, uri: str, caption: str = "") -> str:
    text = f"<h2>{html.escape(title)}</h2>\n<img alt=\"{html.escape(title)}\" src=\"{uri}\">"
    return text + (f"\n<p>{html.escape(caption)}</p>" if caption else "")


def render(data: dict[str, Any]) -> str:
    """The page, from what ``collect_report`` read."""
    config, train, evals = data["config"], data["train"], data["eval"]
    notes: list[str] = []
    sections: list[str] = []
    last_step = max((r.get("step", 0) for r in data["records"]), default=0)
    total = (config.get("training") or {}).get("max_steps")
    if not data["finished"]:
        notes.append(f"This run has no final model yet: it is in progress or stopped at step {last_step}. "
                     "The page shows what has been logged so far.")
    if train:
        sections.append(figure("Loss and learning rate", plot_training_curves(train)))
    else:
        notes.append("No training step has been logged yet.")
    eval_keys = numeric_keys(evals, "eval_")
    if eval_keys and len(evals) > 1:
        sections.append(figure("Evaluation metrics over steps", plot_metric_grid(evals, eval_keys[:MAX_EVAL_PLOTS],
                                                                                 "eval_")))
    if eval_keys:
        sections.append("<h2>Evaluation</h2>" + metrics_table(evals))
    health_keys = numeric_keys(train, "health_")
    if health_keys:
        sections.append(figure("Embedding health", plot_metric_grid(train, health_keys, "health_",
                                                                    {"health_variance": COLLAPSE_THRESHOLD}),
                               "alignment: distance of positives (lower is better); uniformity: spread over the "
                               "sphere (lower is better); variance: about 1 when spread, near 0 when collapsed; "
                               "margin_met: triplets with zero loss; mined: tuples the miner keeps."))
        collapsed = [r["step"] for r in train if r.get("health_variance", 1.0) < COLLAPSE_THRESHOLD]
        if collapsed:
            notes.append(f"Embedding collapse from step {collapsed[0]}: the variance of the embeddings fell below "
                         f"{COLLAPSE_THRESHOLD:g}, so every input gets almost the same vector.")
    snapshots = data["snapshots"]
    if snapshots:
        sections.append(figure("Eval set: positive vs negative similarities", plot_similarity_histograms(snapshots),
                               "A model that learned pushes the green (positive) mass right of the red (negative) mass."))
        sections.append(projection_section(snapshots, notes))
    elif evals:
        notes.append("No eval-set snapshot in diagnostics/: similarity histograms and the projection are missing.")
    if data["preflight"] is not None:
        sections.append(preflight_table(data["preflight"]))
    name = (config.get("training") or {}).get("run_name") or data["run_dir"].name
    title = f"{TITLE_START}{name}"
    summary = run_summary(config, train, last_step, total, data["finished"])
    body = "\n".join([f"<h1>{html.escape(title)}</h1>", summary,
                      *[f"<p class=\"note\">{html.escape(n)}</p>" for n in notes], *sections])
    return (f"{PAGE_START}{html.escape(name)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def run_summary(config: dict[str, Any], train: list[dict[str, Any]], last_step: int, total: Any,
                finished: bool) -> str:
    model = config.get("model") or {}
    loss = config.get("loss") or {}
    training = config.get("training") or {}
    rows = [
        ("model", model.get("name_or_path") if model.get("kind", "text") == "text" else "dual encoder"),
        ("loss", json.dumps(loss)),
        ("miner", json.dumps(config.get("miner")) if config.get("miner") else "none"),
        ("batch size", training.get("batch_size")),
        ("steps", f"{last_step}" + (f" of {total}" if total else "")),
        ("status", "finished" if finished else "in progress or stopped"),
    ]
    if train:
        rows.append(("loss first / last", f"{train[0]['loss']:.4f} / {train[-1]['loss']:.4f}"))
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def metrics_table(evals: list[dict[str, Any]]) -> str:
    first, last = evals[0], evals[-1]
    keys = numeric_keys(evals, "eval_")
    start = " (before training)" if first["step"] == 0 else ""  # training.eval_on_start: the starting model
    head = f"<tr><th>metric</th><th>step {first['step']}{start}</th>" + (
        f"<th>step {last['step']}</th>" if last is not first else "") + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(k.removeprefix('eval_'))}</td><td>{first.get(k, float('nan')):.4f}</td>"
        + (f"<td>{last.get(k, float('nan')):.4f}</td>" if last is not first else "") + "</tr>" for k in keys)
    return f"<table>{head}{rows}</table>"


def projection_section(snapshots: dict[str, EvalSnapshot], notes: list[str]) -> str:
    when = "after" if "after" in snapshots else "before"
    snapshot = snapshots[when]
    distinct = len(set(snapshot.groups.tolist()))
    coloured = 1 < distinct <= MAX_COLOURED_GROUPS
    caption = {"class": f"coloured by class ({distinct} classes)", "role": "queries and documents",
               "modality": "images and captions"}.get(snapshot.grouping, snapshot.grouping)
    if snapshot.grouping == "class" and distinct <= 1:
        notes.append("The eval sample holds a single class: the projection is drawn without colours.")
        caption = "one class: no colours"
    elif not coloured:
        caption = f"{distinct} classes: too many to colour"
    uri = plot_projection(snapshot.embeddings, snapshot.groups, coloured, f"eval embeddings {when} training")
    return figure("Eval embeddings in 2-D", uri, caption)


def preflight_table(report: PreflightReport) -> str:
    rows = "".join(
        f"<tr><td class=\"{f.level}\">{f.level}</td><td>{html.escape(f.check)}</td><td>{html.escape(f.message)}"
        + (f"<br><small>fix: {html.escape(f.fix)}</small>" if f.fix else "") + "</td></tr>"
        for f in report.findings)
    return f"<h2>Preflight</h2><table>{rows}</table>"


def write_run_report(run_dir: str | Path) -> Path | None:
    """The end-of-run report: a failure is logged, never raised (the model is already saved)."""
    try:
        path = write_report(run_dir)
    except Exception as err:  # noqa: BLE001 - the run itself succeeded
        logger.warning("could not write the run report (%s: %s); try `textdml report %s`", type(err).__name__, err,
                       run_dir)
        return None
    logger.info("report: %s", path)
    return path
