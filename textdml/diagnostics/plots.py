"""Matplotlib figures for the run report, each returned as an inline PNG (a ``data:`` URI)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

FIGURE_DPI = 90


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: no display, no window, safe in any process."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(records: list[dict[str, Any]]) -> str:
    """Loss and learning rate over steps, side by side."""
    plt = pyplot()
    figure, (loss_axis, lr_axis) = plt.subplots(1, 2, figsize=(10, 3.2))
    steps, values = series(records, "loss")
    loss_axis.plot(steps, values, color="tab:blue", marker="." if len(steps) < 50 else None)
    loss_axis.set(title="training loss", xlabel="step", ylabel="loss")
    steps, values = series(records, "lr")
    lr_axis.plot(steps, values, color="tab:orange")
    lr_axis.set(title="learning rate", xlabel="step")
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for axis in (loss_axis, lr_axis):
        axis.grid(alpha=0.3)
    return to_data_uri(figure)


def plot_metric_grid(records: list[dict[str, Any]], keys: list[str], title_prefix: str = "",
                     thresholds: dict[str, float] | None = None) -> str:
    """One small line plot per key, four to a row."""
    plt = pyplot()
    columns = min(4, len(keys))
    rows = -(-len(keys) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        steps, values = series(records, key)
        axis.plot(steps, values, marker="." if len(steps) < 50 else None)
        axis.set_title(key.removeprefix(title_prefix), fontsize=10)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        if thresholds and key in thresholds:
            axis.axhline(thresholds[key], color="tab:red", linestyle="--", linewidth=1, label="collapse")
            axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(keys):]:
        axis.set_visible(False)
    figure.tight_layout()
    return to_data_uri(figure)


def plot_similarity_histograms(snapshots: dict[str, Any]) -> str:
    """Positive vs negative cosine similarities of the eval set, one panel per snapshot."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(snapshots), figsize=(5 * len(snapshots), 3.2), squeeze=False, sharey=False)
    # Shared bins over the range the similarities take, so before and after compare at a glance.
    values = np.concatenate([np.concatenate([s.positive, s.negative]) for s in snapshots.values()] or [np.zeros(1)])
    low, high = (max(-1.0, float(values.min()) - 0.02), min(1.0, float(values.max()) + 0.02)) if values.size else (-1, 1)
    bins = np.linspace(low, high if high > low else low + 1e-3, 51)
    for axis, (name, snapshot) in zip(axes.flat, snapshots.items()):
        for values, label, colour in ((snapshot.negative, "negative pairs", "tab:red"),
                                      (snapshot.positive, "positive pairs", "tab:green")):
            if len(values):
                axis.hist(np.clip(values, -1, 1), bins=bins, density=True, alpha=0.55, color=colour,
                          label=f"{label} (mean {np.mean(values):.2f})")
        axis.set(title=f"{name} training", xlabel="cosine similarity", ylabel="density")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return to_data_uri(figure)


def project_2d(embeddings: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates: UMAP when ``umap-learn`` is installed, PCA otherwise."""
    if len(embeddings) >= 10:
        try:
            import umap  # type: ignore[import-not-found]

            neighbours = min(15, len(embeddings) - 1)
            return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed).fit_transform(embeddings), "UMAP"
        except ImportError:
            pass
    from sklearn.decomposition import PCA

    if len(embeddings) < 2 or embeddings.shape[1] < 2:
        return np.zeros((len(embeddings), 2)), "PCA"
    return PCA(n_components=2, random_state=seed).fit_transform(embeddings), "PCA"


def plot_projection(embeddings: np.ndarray, groups: np.ndarray, coloured: bool, title: str) -> str:
    """A scatter of the embeddings in 2-D, coloured by group when ``coloured``."""
    plt = pyplot()
    points, method = project_2d(embeddings)
    figure, axis = plt.subplots(figsize=(6, 5))
    if coloured:
        names = list(dict.fromkeys(groups.tolist()))
        ids = np.array([names.index(g) for g in groups])
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20" if len(names) <= 20 else "turbo")
        scatter = axis.scatter(points[:, 0], points[:, 1], c=ids, cmap=cmap, s=14, alpha=0.8,
                               vmin=0, vmax=max(len(names) - 1, 1))
        if len(names) <= 20:
            handles = [axis.scatter([], [], color=cmap(i / max(len(names) - 1, 1)) if len(names) > 1 else cmap(0),
                                    s=14, label=str(name)[:24]) for i, name in enumerate(names)]
            axis.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
        else:
            figure.colorbar(scatter, ax=axis, label=f"{len(names)} classes")
    else:
        axis.scatter(points[:, 0], points[:, 1], s=14, alpha=0.8, color="tab:gray")
    axis.set(title=f"{title} ({method})", xticks=[], yticks=[])
    return to_data_uri(figure)
