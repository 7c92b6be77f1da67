"""``textdml check``: what would go wrong with this run, found before it starts.

On a sample of the training data and the untrained model: the columns against the loss's roles;
empty texts and the share truncated at ``max_seq_length``; duplicates per batch and across the
data; classes with fewer than two rows; the negatives each anchor is scored against; the initial
loss against its expected value; the share of triplets that already meet the margin; a memory
estimate for the batch on this device; the base model's metrics on the eval set. Each finding
is ``ok``, ``warning`` or ``error`` with the fix in one sentence.

``textdml train`` runs the brief version (no base-model evaluation) first; errors stop it and
``training.preflight=false`` turns it off.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from textdml.config import RunConfig
from textdml.diagnostics.classes import (
    count_classes,
    learns_from_singletons,
    singleton_loss,
    small_classes_message,
    training_class_counts,
)
from textdml.diagnostics.health import BatchEmbeddings, embed_batch, embedding_health
from textdml.losses.needs import loss_needs
from textdml.models.saving import is_image_text
from textdml.training.tasks import gathers_across_processes

logger = logging.getLogger(__name__)

Level = Literal["ok", "warning", "error"]
BRIEF_SCAN_ROWS = 2_000_000  # the brief preflight counts duplicates on a sample above this
LEVELS: tuple[Level, ...] = ("ok", "warning", "error")


class PreflightError(ValueError):
    """The preflight found errors: the run would fail or learn nothing."""


@dataclass(frozen=True)
class Finding:
    """One check's verdict.

    Attributes:
        check: a short name (``columns``, ``texts``, ``duplicates``, ...).
        level: ``ok``, ``warning`` or ``error``.
        message: what was measured.
        fix: what to change, in one sentence (empty for ``ok``).
    """

    check: str
    level: Level
    message: str
    fix: str = ""


@dataclass
class PreflightReport:
    """All findings of a preflight, in the order they were checked."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, level: Level, message: str, fix: str = "") -> None:
        self.findings.append(Finding(check, level, message, fix))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def get(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def format(self) -> str:
        """A plain-text table, one finding per line and its fix below it."""
        width = max((len(f.check) for f in self.findings), default=5)
        lines = []
        for f in self.findings:
            lines.append(f"{f.level.upper():<8}{f.check:<{width + 2}}{f.message}")
            if f.fix:
                lines.append(f"{'':<{width + 10}}fix: {f.fix}")
        counts = Counter(f.level for f in self.findings)
        lines.append(f"preflight: {counts['error']} error(s), {counts['warning']} warning(s), {counts['ok']} ok")
        return "\n".join(lines)

    def error_message(self) -> str:
        parts = [f"{f.check}: {f.message} Fix: {f.fix}" for f in self.errors]
        return ("the preflight found " + "; ".join(parts) +
                " (set training.preflight=false to train anyway)")

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [dataclasses.asdict(f) for f in self.findings]}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PreflightReport:
        return cls([Finding(**f) for f in json.loads(Path(path).read_text())["findings"]])


@dataclass
class PreflightContext:
    """What the checks look at: the config, the untrained model, the data and the loss."""

    config: RunConfig
    model: nn.Module
    data: Any  # textdml.data.pipeline.TrainingData
    loss: nn.Module
    miner: nn.Module | None
    loss_name: str
    num_processes: int
    sample: Dataset
    dual: bool
    brief: bool = False

    @property
    def scan(self) -> Dataset:
        """The data that whole-data counts run on: all of it, except for huge data in the brief preflight."""
        dataset = self.data.dataset
        if isinstance(dataset, Dataset) and (not self.brief or len(dataset) <= BRIEF_SCAN_ROWS):
            return dataset
        return self.sample

    @property
    def batch_size(self) -> int:
        return self.config.training.batch_size


def run_preflight(
    config: RunConfig,
    *,
    model: nn.Module | None = None,
    data: Any = None,
    loss: nn.Module | None = None,
    miner: nn.Module | None = None,
    evaluator: Callable[[Any], dict[str, float]] | None = None,
    brief: bool = False,
    num_processes: int = 1,
    sample_rows: int | None = None,
) -> PreflightReport:
    """Check a run before it starts; returns every finding (``report.errors`` for the blocking ones).

    Args:
        config: the run config.
        model: the untrained model (default: built from ``config.model``, on CUDA when available).
        data: the prepared ``TrainingData`` (default: loaded from ``config.train``; a loading error
            becomes an ``error`` finding).
        loss / miner: built from the config when not given.
        evaluator: evaluated on the untrained model (skipped when ``brief``).
        brief: the quick version ``train`` runs: a smaller sample and no evaluation.
        num_processes: devices the run trains on (for the negatives per anchor).
        sample_rows: rows to sample (default 256 brief, 2048 otherwise).
    """
    from textdml.training.build import create_model
    from textdml.training.setup import build_data, build_run

    report = PreflightReport()
    if model is None:
        model = create_model(config.model)
        if torch.cuda.is_available():
            model = model.to("cuda")
    if data is None:
        try:
            data = build_data(config, model, loss)
        except ValueError as err:
            report.add("data", "error", str(err), "make the training data fit the loss as the message says")
            return report
    # The parts training builds (the same input kinds, loss and data fitted to it), without a loader.
    parts = build_run(config, model=model, data=data, loss=loss, miner=miner, loader=False)
    model, data, loss, miner = parts.model, parts.data, parts.loss, parts.miner
    loss_name = str(config.loss.get("name") or config.loss.get("target"))
    dual = is_image_text(model)
    sample = sample_dataset(data.dataset, sample_rows or (256 if brief else 2048), config.training.seed)
    context = PreflightContext(config, model, data, loss, miner, loss_name, num_processes, sample, dual, brief)
    checks: list[Callable[[PreflightContext, PreflightReport], None]] = [
        check_columns, check_texts, check_duplicates, check_classes, check_negatives, check_batch, check_memory,
    ]
    for check in checks:
        run_check(check, context, report)
    if not brief:
        run_check(functools.partial(check_base_metrics, evaluator=evaluator), context, report)
    return report


def run_check(check: Callable[[PreflightContext, PreflightReport], None], context: PreflightContext,
              report: PreflightReport) -> None:
    """A check that cannot run is a warning, never a crash of the run it is checking."""
    try:
        check(context, report)
    except Exception as err:  # noqa: BLE001 - reported, and the other checks still run
        name = getattr(getattr(check, "func", check), "__name__", "check").removeprefix("check_")
        report.add(name, "warning", f"could not run: {type(err).__name__}: {err}",
                   "run `textdml check` for the full report, or report this as a bug")


def sample_dataset(dataset: Any, rows: int, seed: int) -> Dataset:
    """A seeded random sample (map-style data) or the first rows (streaming data), as a Dataset."""
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        picked = list(range(len(dataset)))
        if len(dataset) > rows:
            picked = np.sort(np.random.default_rng(seed).choice(len(dataset), size=rows, replace=False)).tolist()
        if isinstance(dataset, Dataset):
            return dataset if len(picked) == len(dataset) else dataset.select(picked)
        return Dataset.from_list([dataset[i] for i in picked])  # any sequence of row dicts
    return Dataset.from_list(list(itertools.islice(iter(dataset), rows)))  # streaming: the first rows


# ---------------------------------------------------------------------------------- the checks
def check_columns(c: PreflightContext, report: PreflightReport) -> None:
    roles = c.data.roles
    named = {name: getattr(roles, name, None) for name in ("anchor", "image", "text", "positive", "label", "group")}
    mapping = ", ".join(f"{role}={column!r}" for role, column in named.items() if isinstance(column, str))
    negatives = getattr(roles, "negatives", ())
    if negatives:
        mapping += f", negatives={list(negatives)}"
    report.add("columns", "ok", f"{roles.kind}: {mapping}; loss {c.loss_name!r} trains on {roles.kind}")


def text_cells(sample: Dataset, column: str) -> list[Any]:
    cells = []
    for value in sample[column]:
        cells.extend(value if isinstance(value, list) else [value])
    return cells


def check_texts(c: PreflightContext, report: PreflightReport) -> None:
    columns = c.data.roles.text_columns
    if not columns:
        report.add("texts", "ok", "no text columns (labelled images)")
        return
    for column in columns:
        cells = text_cells(c.sample, column)
        empty = sum(1 for cell in cells if not isinstance(cell, str) or not cell.strip())
        if empty:
            report.add("texts", "error", f"column {column!r}: {empty} of {len(cells)} sampled texts are empty or "
                       "not strings.", f"drop or fill those rows, e.g. dataset.filter(lambda r: r[{column!r}])")
    tokenizer, max_length = getattr(c.model, "tokenizer", None), getattr(c.model, "max_seq_length", None)
    if tokenizer is None or not max_length:
        report.add("truncation", "ok", "not measured for this model's text tower")
        return
    lengths = token_lengths(c, columns)
    for column, column_lengths in lengths.items():
        share = float(np.mean(column_lengths > max_length)) if len(column_lengths) else 0.0
        longest = int(column_lengths.max()) if len(column_lengths) else 0
        message = (f"column {column!r}: {share:.1%} of sampled texts are longer than max_seq_length={max_length} "
                   f"tokens (longest {longest})")
        if share > 0.05:
            report.add("truncation", "warning", message + "; their ends are cut off.",
                       "raise model.max_seq_length (memory grows with it) or shorten the texts")
        else:
            report.add("truncation", "ok", message)


def token_lengths(c: PreflightContext, columns: list[str]) -> dict[str, np.ndarray]:
    tokenizer = c.model.tokenizer  # type: ignore[attr-defined]
    lengths = {}
    for column in columns:
        texts = [cell for cell in text_cells(c.sample, column) if isinstance(cell, str) and cell.strip()]
        encoded = tokenizer(texts, truncation=False, verbose=False)["input_ids"] if texts else []
        lengths[column] = np.array([len(ids) for ids in encoded], dtype=np.int64)
    return lengths


def duplicate_shares(values: list[Any], batch_size: int) -> tuple[float, float]:
    """``(across, per_batch)``: the share of rows whose value occurs in another row of the data, and
    the expected share whose value occurs again in the same random batch.

    Example:
        >>> across, per_batch = duplicate_shares(["a", "a", "b", "c"], batch_size=2)
        >>> across, round(per_batch, 3)
        (0.5, 0.167)
    """
    n = len(values)
    if n < 2:
        return 0.0, 0.0
    counts = Counter(values)
    repeats = np.array([counts[v] - 1 for v in values], dtype=np.float64)  # other copies of each row's value
    across = float(np.mean(repeats > 0))
    # Each other copy lands in the row's batch with probability (B - 1) / (N - 1).
    chance = min(1.0, (batch_size - 1) / (n - 1))
    per_batch = float(np.mean(1 - (1 - chance) ** repeats))
    return across, per_batch


def per_set_duplicates(values: list[Any], set_lengths: list[int], batch_size: int) -> float:
    """The expected share of rows meeting a copy in their batch when each batch comes from one set.

    Example:
        >>> per_set_duplicates(["a", "b", "a", "b"], [2, 2], batch_size=2)  # copies only across the sets
        0.0
    """
    shares, start = [], 0
    for length in set_lengths:
        shares.append(duplicate_shares(values[start : start + length], batch_size)[1] * length)
        start += length
    return sum(shares) / max(start, 1)


def check_duplicates(c: PreflightContext, report: PreflightReport) -> None:
    """A repeated anchor with another partner makes that partner a false negative; a repeated
    positive is harmless (equal texts share a label, so they count as positives of each other)."""
    roles, t = c.data.roles, c.config.training
    if roles.kind in ("labelled", "labelled_images"):
        return  # rows of one class are meant to repeat their label
    full = c.scan
    scope = "in the data" if full is c.data.dataset else "in the sample"
    no_duplicates = t.sampler == "no_duplicates"
    anchor = getattr(roles, "anchor", None) or getattr(roles, "image", None)
    for column in roles.text_columns:
        if column not in full.column_names or (getattr(roles, "negative_is_list", False) and column in roles.negatives):
            continue
        values = full.data.column(column).to_pylist()
        across, per_batch = duplicate_shares(values, t.batch_size)
        if full is c.data.dataset and c.data.set_lengths is not None:
            # Several train sets: every batch is drawn from one of them (round robin or proportional),
            # so a text met in another set never shares its batch.
            per_batch = per_set_duplicates(values, c.data.set_lengths, t.batch_size)
        per_batch = 0.0 if no_duplicates else per_batch
        message = (f"column {column!r}: {across:.1%} of rows repeat a text {scope}, "
                   f"{per_batch:.1%} meet a copy in the same batch" + (" (sampler no_duplicates)" if no_duplicates else ""))
        if column == anchor and per_batch > 0.02:
            report.add("duplicates", "warning", message + ": a repeated anchor makes its copy's partner a false negative.",
                       "set training.sampler=no_duplicates (no text twice in a batch)")
        elif column == anchor:
            report.add("duplicates", "ok", message)
        elif across > 0:
            report.add("duplicates", "ok", message + "; equal texts share a label, so they are never negatives of each other")


def check_classes(c: PreflightContext, report: PreflightReport) -> None:
    roles, t = c.data.roles, c.config.training
    if roles.kind not in ("labelled", "labelled_images"):
        return
    counts = training_class_counts(c.data.dataset, roles.label)
    scope = "training data"
    if counts is None:
        counts, scope = count_classes(c.sample[roles.label]), "sample"
    singleton_ok = learns_from_singletons(c.loss)
    message = (f"{counts.num_classes} classes in the {scope}, {counts.smallest} to {counts.largest} rows each; "
               f"{counts.num_small} have fewer than two rows")
    if counts.num_small and not singleton_ok:
        without_positives = singleton_loss(c.loss, c.miner) if counts.all_small else None
        # An error only where the loss is measured to be 0.0 without positives: nothing would train.
        level: Level = "error" if counts.all_small and without_positives == 0.0 else "warning"
        report.add("classes", level, small_classes_message(counts, c.loss_name, without_positives) + ".",
                   "give each class at least two rows, or train a class-level loss such as proxy_anchor")
        return
    report.add("classes", "ok", message)
    if singleton_ok:
        return
    if t.sampler == "m_per_class":
        report.add("positives", "ok", f"sampler m_per_class: {t.m_per_class - 1} positives per anchor in every batch")
        return
    labels = c.scan.data.column(roles.label).to_pylist()
    class_sizes = Counter(labels)
    n = len(labels)
    expected = sum(size * (size - 1) for size in class_sizes.values()) / max(n * (n - 1), 1) * (t.batch_size - 1)
    message = f"an anchor has {expected:.2f} positives in a random batch of {t.batch_size} on average"
    if expected < 1:
        report.add("positives", "warning", message + ": most anchors have no positive to learn from.",
                   f"set training.sampler=m_per_class (training.m_per_class={t.m_per_class} rows of each class per batch)")
    else:
        report.add("positives", "ok", message)


def refs_per_anchor(c: PreflightContext) -> int:
    roles = c.data.roles
    if getattr(roles, "negative_is_list", False) and roles.negatives:
        first = c.sample[roles.negatives[0]]
        return 1 + (len(first[0]) if first else 0)
    return 1 + len(getattr(roles, "negatives", ()))


def is_softmax_loss(loss: nn.Module) -> bool:
    """Losses that score each anchor against every candidate through a softmax with a temperature."""
    return isinstance(getattr(loss, "temperature", None), (int, float)) or hasattr(loss, "logit_scale")


def check_negatives(c: PreflightContext, report: PreflightReport) -> None:
    roles, t = c.data.roles, c.config.training
    if roles.kind == "scored_pairs":
        report.add("negatives", "ok", "scored pairs: each pair is its own positive or negative")
        return
    if learns_from_singletons(c.loss):
        report.add("negatives", "ok", "class-level loss: every row is scored against every class")
        return
    devices = c.num_processes if gathers_across_processes(c.loss) else 1
    if roles.kind in ("labelled", "labelled_images"):
        own = t.m_per_class if t.sampler == "m_per_class" else 1
        negatives = t.batch_size * devices - own
        formula = f"{t.batch_size} per device x {devices} device(s) - {own} of its class"
    else:
        refs = refs_per_anchor(c)
        negatives = t.batch_size * devices * refs - 1
        formula = f"{t.batch_size} per device x {devices} device(s) x {refs} reference(s) per row - 1"
    if t.grad_cache:
        formula += f"; GradCache embeds them {t.mini_batch_size or 'planned'} rows at a time"
    message = f"{negatives} negatives per anchor ({formula})"
    if is_softmax_loss(c.loss) and negatives < 31:
        report.add("negatives", "warning", message + ": a softmax over so few candidates is an easy task.",
                   "raise training.batch_size (training.grad_cache=true keeps the memory flat)")
    else:
        report.add("negatives", "ok", message)


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch with its tensors (and the blocks of its tokenised texts) on ``device``."""

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and hasattr(value, "blocks"):
            return dataclasses.replace(value, blocks=[move(b) for b in value.blocks])
        return value

    return {key: move(value) for key, value in batch.items()}


def first_batch_rows(c: PreflightContext) -> list[int] | None:
    """Rows of the first batch that training would draw from the whole training data (None for
    streaming data): the configured batch sampler (``m_per_class``, ``no_duplicates``, several train
    sets), else the seeded shuffle of ``sampler=random``. ``train`` and ``check`` both come here, so
    they score the same batch; a random sample of rows would break classes into single rows, which
    ``m_per_class`` then repeats (identical "positives", a loss of 0)."""
    from textdml.data.pipeline import create_batch_sampler
    from textdml.data.shuffle import SeededShuffleSampler

    data, t = c.data, c.config.training
    if not isinstance(data.dataset, Dataset):
        return None
    # The token-budget sampler would tokenise the whole data again; its batches are drawn at random.
    sampler = None if t.max_tokens_per_batch and data.set_lengths is None else create_batch_sampler(data, c.config, c.model)
    if sampler is not None:
        return [int(i) for i in next(iter(sampler))][: c.batch_size]
    order = SeededShuffleSampler(len(data.dataset), t.seed) if t.sampler != "sequential" else range(len(data.dataset))
    return [int(i) for i in itertools.islice(iter(order), c.batch_size)]


def first_batch(c: PreflightContext) -> dict[str, Any]:
    """The first batch as training would build it (the sample's first rows for streaming data)."""
    rows = first_batch_rows(c)
    if rows is None:
        return c.data.collator([c.sample[i] for i in range(min(len(c.sample), c.batch_size))])
    return c.data.collator([c.data.dataset[i] for i in rows])


def check_batch(c: PreflightContext, report: PreflightReport) -> None:
    """The initial loss on one batch (eval mode, no grad) against its expected value, and the margins."""
    from textdml.training.tasks import create_task

    device = next(c.model.parameters()).device
    batch = move_batch(first_batch(c), device)
    # Copies: a loss or miner with state (a cross-batch memory, a call counter) must not see this batch.
    loss, miner = copy.deepcopy(c.loss), copy.deepcopy(c.miner)
    task = create_task(c.model, loss, miner)
    was_training = c.model.training
    c.model.eval()
    try:
        with torch.no_grad():
            value = float(task.training_step(batch).loss) + 0.0  # no "-0.0000" for an empty sum
            embedded = embed_batch(task, batch)
            health = embedding_health(embedded, loss, miner)
    finally:
        c.model.train(was_training)
    if not math.isfinite(value):
        report.add("initial_loss", "error", f"the loss of the untrained model on a sample batch is {value}.",
                   "check the loss arguments (temperature, margin) and train with mixed_precision=no")
        return
    check_initial_loss(c, report, value, embedded)
    met = health.get("margin_met")
    if met is not None:
        tuples = "pairs" if hasattr(c.loss, "pos_margin") else "triplets"
        message = f"{met:.1%} of the batch's {tuples} already meet loss.margin={getattr(c.loss, 'margin', None)}"
        if met > 0.9:
            report.add("margins", "warning", message + ": they give zero loss and no gradient.",
                       "raise loss.margin, or mine hard tuples (miner: {name: batch_hard})")
        else:
            report.add("margins", "ok", message)
    if "pos_sim" in health and "neg_sim" in health:
        report.add("similarities", "ok", f"untrained model: positives {health['pos_sim']:.3f}, negatives "
                   f"{health['neg_sim']:.3f} mean cosine similarity; in-batch top-1 {health.get('top1', 0):.1%}")


def check_initial_loss(c: PreflightContext, report: PreflightReport, value: float, embedded: BatchEmbeddings) -> None:
    message = f"initial loss {value:.4f}"
    if loss_needs(c.loss).sparse_model:
        # Unbounded dot products of sparse vectors plus FLOPS: no chance level or temperature floor applies.
        report.add("initial_loss", "ok", message + " (ranking term + FLOPS on sparse dot products)")
        return
    if not is_softmax_loss(c.loss):
        if value == 0.0:
            report.add("initial_loss", "warning", message + ": nothing to learn from the first batch (every "
                       "margin met, or no positive pair in it).",
                       "raise loss.margin, use a miner, or training.sampler=m_per_class for labelled data")
        else:
            report.add("initial_loss", "ok", message)
        return
    if learns_from_singletons(c.loss) and c.data.label_ids:
        candidates = len(c.data.label_ids)  # a softmax over the classes
    else:
        candidates = (len(embedded.ref_embeddings) if embedded.ref_embeddings is not None
                      else len(embedded.embeddings) - 1) * (c.num_processes if gathers_across_processes(c.loss) else 1)
    chance = math.log(max(candidates, 2))
    temperature = getattr(c.loss, "temperature", None)
    if not isinstance(temperature, (int, float)):
        temperature = 1 / float(c.loss.logit_scale.detach().float().exp().mean())  # type: ignore[union-attr]
    # With cosine similarities in [-1, 1], even perfect embeddings leave this much loss.
    floor = math.log1p((candidates - 1) * math.exp(-2 / temperature))
    message += f" vs chance level log({candidates}) = {chance:.2f}"
    if floor > 0.25 * chance:
        report.add("temperature", "warning", f"temperature {temperature:g}: even perfect embeddings keep the loss "
                   f"above {floor:.2f} (chance {chance:.2f}), so the gradient stays weak.",
                   "lower loss.temperature to about 0.05 (InfoNCE) or let the logit scale learn")
    elif temperature < 0.005:
        report.add("temperature", "warning", f"temperature {temperature:g}: logits reach {2 / temperature:.0f}, "
                   "so the softmax saturates and overflows in float16.", "raise loss.temperature to about 0.02-0.05")
    else:
        report.add("temperature", "ok", f"temperature {temperature:g}: the loss can fall to {floor:.3f}")
    if value > 1.5 * chance:
        report.add("initial_loss", "warning", message + ": far above chance, the scale of the logits is off.",
                   "check loss.temperature (similarities are divided by it)")
    else:
        report.add("initial_loss", "ok", message)


def texts_per_column(c: PreflightContext) -> dict[str, int]:
    """Texts each text column puts in one batch: ``batch_size``, times the list length for a column of lists."""
    roles, counts = c.data.roles, {}
    for column in roles.text_columns:
        first = c.sample[0][column] if len(c.sample) else None
        per_row = len(first) if isinstance(first, list) else 1
        counts[column] = c.batch_size * per_row
    return counts


def batch_memory(c: PreflightContext, device: torch.device, dtype: torch.dtype | None) -> tuple[float, int, int]:
    """``(bytes, texts, tokens)``: weights, gradients, AdamW state and the activations of one batch,
    each column's texts padded to that column's longest sampled text (a batch pads each role on
    its own: short queries are not counted at the length of long passages)."""
    from textdml.training.memory_planner import estimate_memory, trainable_parameters

    t = c.config.training
    lengths = token_lengths(c, c.data.roles.text_columns)
    seqs = {column: min(max(int(v.max()) if len(v) else 8, 1), c.model.max_seq_length)  # type: ignore[attr-defined]
            for column, v in lengths.items()}
    counts = texts_per_column(c)
    fixed, _ = estimate_memory(c.model, max(seqs.values(), default=8), dtype, device)
    fixed += 8 * trainable_parameters(c.model)  # AdamW state
    if t.grad_cache:  # one mini-batch of the longest texts in memory at a time
        seq = max(seqs.values(), default=8)
        texts = min(sum(counts.values()), t.mini_batch_size or 32)
        return fixed + texts * estimate_memory(c.model, seq, dtype, device)[1], texts, seq
    activations = sum(counts[column] * estimate_memory(c.model, seq, dtype, device)[1] for column, seq in seqs.items())
    return fixed + activations, sum(counts.values()), max(seqs.values(), default=8)


def check_memory(c: PreflightContext, report: PreflightReport) -> None:
    from textdml.training.memory_planner import GiB

    t = c.config.training
    if c.dual or not hasattr(c.model, "tokenizer"):
        report.add("memory", "ok", "not estimated for image-text models: watch the first steps")
        return
    device = next(c.model.parameters()).device
    bf16 = t.mixed_precision == "bf16" or (t.mixed_precision == "auto" and device.type == "cuda"
                                           and torch.cuda.is_bf16_supported())
    need, in_memory, seq = batch_memory(c, device, torch.bfloat16 if bf16 else None)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        where = f"{torch.cuda.get_device_name(device)} ({total / GiB:.1f} GiB)"
    else:
        import psutil

        total = psutil.virtual_memory().available
        where = f"this CPU's available memory ({total / GiB:.1f} GiB)"
    message = (f"about {need / GiB:.2f} GiB for {in_memory} texts of up to {seq} tokens "
               f"(weights, gradients, AdamW state, activations kept for backward) on {where}")
    if need > 0.9 * total and not t.grad_cache:
        report.add("memory", "warning", message + ": the batch may not fit.",
                   "set training.grad_cache=true (any batch size in bounded memory) or lower training.batch_size")
    else:
        report.add("memory", "ok", message)


def check_base_metrics(c: PreflightContext, report: PreflightReport, evaluator: Callable | None) -> None:
    if evaluator is None:
        report.add("base_metrics", "ok", "no eval.data: add held-out data to compare the base and trained model")
        return
    results = evaluator(c.model)
    primary = getattr(evaluator, "primary_metric", None)
    shown = {k: v for k, v in results.items() if k == primary} or dict(list(results.items())[:3])
    text = ", ".join(f"{k}={v:.4f}" for k, v in shown.items())
    report.add("base_metrics", "ok", f"the untrained model on the eval set: {text}")


def log_report(report: PreflightReport, where: str = "preflight.json") -> None:
    """Warnings and errors into the training log one by one, the passed checks as one summary line."""
    for finding in report.findings:
        if finding.level != "ok":
            logger.warning("preflight %s: %s: %s Fix: %s", finding.level, finding.check, finding.message, finding.fix)
    passed = [f.check for f in report.findings if f.level == "ok"]
    logger.info("preflight: %d error(s), %d warning(s); passed: %s (details in %s)", len(report.errors),
                len(report.warnings), ", ".join(dict.fromkeys(passed)) or "none", where)
