"""Losses and miners: textdml vs pytorch-metric-learning (PML), same embeddings, same settings.

Every loss and miner that PML also has (SPECS below, with the settings the parity tests use) is
timed on the same random embeddings and labels: losses forward + backward, miners mining only.
The two run interleaved after a warm-up, so that load from other jobs hits both alike, and the
median of the repeats is reported, with the speed-up PML ms / textdml ms (above 1: textdml is
faster). Labels give 8 rows per class (an m-per-class batch) unless a spec says otherwise.

    python scripts/bench_losses.py                  # B in (256, 1024), D in (384, 768): a few minutes
    python scripts/bench_losses.py --quick          # B=256, D=384
    python scripts/bench_losses.py --only arc_face --only hdc --device cuda

``--only NAME`` matches a spec's name, its name without the ``miner:`` prefix, or the part before
the brackets (``--only arc_face`` runs both ArcFace rows). A PML call slower than SLOW_PML_MS is
timed once, and PML is not run at a larger size where its time at the previous size, scaled by
(batch ratio)^2, passes SLOW_PML_MS: its tuplet margin, lifted structure and NT-Xent losses and its
angular miner loop in Python and take seconds at B=256 (NT-Xent takes 50 s at B=1024).
Not compared (PML has no counterpart): center, clip, siglip losses; the maximum_loss miner.
PML's dynamic soft margin keeps the graph in its histogram and fails on a second backward: it
runs with the histogram detached before each call (PMLDynamicSoftMargin).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from pytorch_metric_learning import losses as pml
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import regularizers as pml_regs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout's textdml, not an installed one

import textdml.losses as ours  # noqa: E402
import textdml.miners as our_miners  # noqa: E402
import textdml.regularizers as regs  # noqa: E402

SLOW_PML_MS = 1000.0  # a PML call expected to be slower than this is not run, one this slow is timed once
SIZES = [(256, 384), (256, 768), (1024, 384), (1024, 768)]  # (batch, dim), smallest first

Factory = Callable[[int, int], torch.nn.Module]  # (num_classes, dim) -> loss or miner


@dataclass
class Spec:
    """One comparison: our module and PML's, built with the same settings."""

    name: str
    ours: Factory
    theirs: Factory
    miner: bool = False
    pml_weight: str | None = None  # PML's class-weight attribute, copied into our ``weight``
    transposed: bool = False  # PML stores that weight as (D, rows), ours is (rows, D)
    rows_per_class: int = 8
    warmup: int = 3  # calls before timing (a cross-batch memory is filled first)
    pml_labels_as_indices: bool = False  # PML takes the labels as ``indices_tuple`` (its manifold loss)
    two_views: bool = False  # called on (embeddings, second view) by position, without labels (VICReg)


class PMLDynamicSoftMargin(pml.DynamicSoftMarginLoss):
    """PML's loss with its stored histogram detached before each call: as is, its second backward
    fails (the histogram keeps the previous step's graph). The detach costs nothing measurable."""

    def compute_loss(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.hist_ = self.hist_.detach()
        return super().compute_loss(*args, **kwargs)


def contrastive_as_pml() -> ours.ContrastiveLoss:
    """Our contrastive loss set up as PML's default one (margin 1, plain distance, mean of nonzero)."""
    return ours.ContrastiveLoss(margin=1.0, distance="lp", power=1, reduction="mean_nonzero")


SPECS = [
    # pair and triplet losses
    Spec("contrastive", lambda c, d: contrastive_as_pml(), lambda c, d: pml.ContrastiveLoss()),
    Spec("triplet", lambda c, d: ours.TripletLoss(), lambda c, d: pml.TripletMarginLoss()),
    Spec("margin", lambda c, d: ours.MarginLoss(), lambda c, d: pml.MarginLoss()),
    Spec("tuplet_margin", lambda c, d: ours.TupletMarginLoss(), lambda c, d: pml.TupletMarginLoss()),
    Spec("angular", lambda c, d: ours.AngularLoss(), lambda c, d: pml.AngularLoss()),
    Spec("n_pairs", lambda c, d: ours.NPairsLoss(distance="cosine_similarity", l2_reg=0.0),
         lambda c, d: pml.NPairsLoss()),
    Spec("lifted_structure", lambda c, d: ours.LiftedStructureLoss(), lambda c, d: pml.LiftedStructureLoss()),
    Spec("generalized_lifted_structure", lambda c, d: ours.GeneralizedLiftedStructureLoss(),
         lambda c, d: pml.GeneralizedLiftedStructureLoss()),
    Spec("nca", lambda c, d: ours.NCALoss(), lambda c, d: pml.NCALoss()),
    Spec("multi_similarity", lambda c, d: ours.MultiSimilarityLoss(), lambda c, d: pml.MultiSimilarityLoss()),
    Spec("circle", lambda c, d: ours.CircleLoss(), lambda c, d: pml.CircleLoss()),
    Spec("intra_pair_variance", lambda c, d: ours.IntraPairVarianceLoss(), lambda c, d: pml.IntraPairVarianceLoss()),
    Spec("histogram", lambda c, d: ours.HistogramLoss(), lambda c, d: pml.HistogramLoss()),
    # ranking losses (Smooth-AP: PML needs sorted labels, as many classes as rows per class)
    Spec("fast_ap", lambda c, d: ours.FastAPLoss(), lambda c, d: pml.FastAPLoss()),
    Spec("smooth_ap", lambda c, d: ours.SmoothAPLoss(include_self=True), lambda c, d: pml.SmoothAPLoss(),
         rows_per_class=16),
    # softmax over the batch; InfoNCE equals NT-Xent when each row has exactly one positive
    Spec("info_nce", lambda c, d: ours.InfoNCELoss(temperature=0.07), lambda c, d: pml.NTXentLoss(0.07),
         rows_per_class=2),
    Spec("ntxent", lambda c, d: ours.NTXentLoss(0.07), lambda c, d: pml.NTXentLoss(0.07)),
    Spec("instance", lambda c, d: ours.InstanceLoss(), lambda c, d: pml.InstanceLoss()),
    Spec("supervised_contrastive", lambda c, d: ours.SupervisedContrastiveLoss(0.1), lambda c, d: pml.SupConLoss(0.1)),
    # wrappers
    Spec("cross_batch_memory(contrastive)", lambda c, d: ours.CrossBatchMemory(contrastive_as_pml(), d, 1024),
         lambda c, d: pml.CrossBatchMemory(pml.ContrastiveLoss(), d, 1024), warmup=4),
    Spec("multiple_losses", lambda c, d: ours.MultipleLosses([contrastive_as_pml(), ours.MultiSimilarityLoss()]),
         lambda c, d: pml.MultipleLosses([pml.ContrastiveLoss(), pml.MultiSimilarityLoss()])),
    # class-level losses (one or a few vectors per class, PML's copied into ours)
    Spec("large_margin_softmax", lambda c, d: ours.LargeMarginSoftmaxLoss(c, d),
         lambda c, d: pml.LargeMarginSoftmaxLoss(c, d), pml_weight="W", transposed=True),
    Spec("sphere_face", lambda c, d: ours.SphereFaceLoss(c, d), lambda c, d: pml.SphereFaceLoss(c, d),
         pml_weight="W", transposed=True),
    Spec("cos_face", lambda c, d: ours.CosFaceLoss(c, d), lambda c, d: pml.CosFaceLoss(c, d),
         pml_weight="W", transposed=True),
    Spec("arc_face", lambda c, d: ours.ArcFaceLoss(c, d, margin=math.radians(28.6)),
         lambda c, d: pml.ArcFaceLoss(c, d, margin=28.6), pml_weight="W", transposed=True),
    Spec("arc_face(sub_centers=3)", lambda c, d: ours.ArcFaceLoss(c, d, margin=math.radians(28.6), sub_centers=3),
         lambda c, d: pml.SubCenterArcFaceLoss(num_classes=c, embedding_size=d, margin=28.6, sub_centers=3), pml_weight="W", transposed=True),
    Spec("norm_softmax", lambda c, d: ours.NormSoftmaxLoss(c, d), lambda c, d: pml.NormalizedSoftmaxLoss(c, d),
         pml_weight="W", transposed=True),
    Spec("proxy_nca", lambda c, d: ours.ProxyNCALoss(c, d), lambda c, d: pml.ProxyNCALoss(c, d),
         pml_weight="proxies"),
    Spec("proxy_anchor", lambda c, d: ours.ProxyAnchorLoss(c, d), lambda c, d: pml.ProxyAnchorLoss(c, d),
         pml_weight="proxies"),
    Spec("soft_triple", lambda c, d: ours.SoftTripleLoss(c, d, tau=0.0), lambda c, d: pml.SoftTripleLoss(c, d),
         pml_weight="fc", transposed=True),
    Spec("p2s_grad", lambda c, d: ours.P2SGradLoss(c, d), lambda c, d: pml.P2SGradLoss(d, c),
         pml_weight="weight", transposed=True),
    Spec("manifold", lambda c, d: ours.ManifoldLoss(c, d), lambda c, d: pml.ManifoldLoss(d, c),
         pml_weight="proxies", pml_labels_as_indices=True),
    # issue 14: ranking, SNR, threshold-consistent, dynamic margin, self-supervised; regularizers attached
    Spec("pnp", lambda c, d: ours.PNPLoss(), lambda c, d: pml.PNPLoss()),
    Spec("ranked_list", lambda c, d: ours.RankedListLoss(margin=0.4, Tn=10), lambda c, d: pml.RankedListLoss(0.4, 10)),
    Spec("signal_to_noise_ratio_contrastive", lambda c, d: ours.SignalToNoiseRatioContrastiveLoss(),
         lambda c, d: pml.SignalToNoiseRatioContrastiveLoss()),
    Spec("threshold_consistent_margin", lambda c, d: ours.ThresholdConsistentMarginLoss(),
         lambda c, d: pml.ThresholdConsistentMarginLoss()),
    Spec("dynamic_soft_margin", lambda c, d: ours.DynamicSoftMarginLoss(), lambda c, d: PMLDynamicSoftMargin()),
    Spec("vicreg", lambda c, d: ours.VICRegLoss(), lambda c, d: pml.VICRegLoss(), two_views=True),
    Spec("arc_face(+regular_face)", lambda c, d: ours.ArcFaceLoss(c, d, margin=math.radians(28.6),
                                                                  weight_regularizer=regs.RegularFaceRegularizer()),
         lambda c, d: pml.ArcFaceLoss(c, d, margin=28.6, weight_regularizer=pml_regs.RegularFaceRegularizer()),
         pml_weight="W", transposed=True),
    Spec("soft_triple(+sparse_centers)", lambda c, d: ours.SoftTripleLoss(
        c, d, tau=0.0, weight_regularizer=regs.SparseCentersRegularizer(weight=0.2)),
         lambda c, d: pml.SoftTripleLoss(c, d, weight_regularizer=pml_regs.SparseCentersRegularizer(c, 10),
                                         weight_reg_weight=0.2), pml_weight="fc", transposed=True),
    Spec("contrastive(+lp)", lambda c, d: ours.ContrastiveLoss(margin=1.0, distance="lp", power=1,
                                                               reduction="mean_nonzero", embedding_regularizer="lp"),
         lambda c, d: pml.ContrastiveLoss(embedding_regularizer=pml_regs.LpRegularizer())),
    # miners
    *[
        Spec(f"miner:triplet_margin({kind})", lambda c, d, kind=kind: our_miners.TripletMarginMiner(0.2, kind),
             lambda c, d, kind=kind: pml_miners.TripletMarginMiner(0.2, type_of_triplets=kind), miner=True)
        for kind in ("all", "hard", "semihard", "easy")
    ],
    Spec("miner:batch_all", lambda c, d: our_miners.BatchAllMiner(0.2),
         lambda c, d: pml_miners.TripletMarginMiner(0.2, type_of_triplets="all"), miner=True),
    Spec("miner:batch_hard", lambda c, d: our_miners.BatchHardMiner(), lambda c, d: pml_miners.BatchHardMiner(),
         miner=True),
    Spec("miner:batch_easy_hard", lambda c, d: our_miners.BatchEasyHardMiner(),
         lambda c, d: pml_miners.BatchEasyHardMiner(), miner=True),
    Spec("miner:angular", lambda c, d: our_miners.AngularMiner(20.0), lambda c, d: pml_miners.AngularMiner(20),
         miner=True),
    Spec("miner:distance_weighted", lambda c, d: our_miners.DistanceWeightedMiner(0.5, 1.4),
         lambda c, d: pml_miners.DistanceWeightedMiner(0.5, 1.4), miner=True),
    Spec("miner:hdc", lambda c, d: our_miners.HDCMiner(0.5), lambda c, d: pml_miners.HDCMiner(0.5), miner=True),
    Spec("miner:multi_similarity", lambda c, d: our_miners.MultiSimilarityMiner(0.1),
         lambda c, d: pml_miners.MultiSimilarityMiner(0.1), miner=True),
    Spec("miner:pair_margin", lambda c, d: our_miners.PairMarginMiner(0.2, 0.8),
         lambda c, d: pml_miners.PairMarginMiner(0.2, 0.8), miner=True),
    Spec("miner:uniform_histogram", lambda c, d: our_miners.UniformHistogramMiner(),
         lambda c, d: pml_miners.UniformHistogramMiner(), miner=True),
]


def matches(spec: Spec, wanted: list[str] | None) -> bool:
    if not wanted:
        return True
    short = spec.name.removeprefix("miner:")
    return any(name in (spec.name, short, short.split("(")[0]) for name in wanted)


def build_pair(spec: Spec, num_classes: int, dim: int, device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    mine, theirs = spec.ours(num_classes, dim).to(device), spec.theirs(num_classes, dim).to(device)
    if spec.pml_weight is not None:
        their_weight = getattr(theirs, spec.pml_weight).detach()
        with torch.no_grad():
            mine.weight.copy_(their_weight.T if spec.transposed else their_weight)
    return mine, theirs


def make_step(
    module: torch.nn.Module, spec: Spec, embeddings: torch.Tensor, labels: torch.Tensor, pml_side: bool = False
) -> Callable:
    if spec.miner:
        return lambda: module(embeddings, labels)
    if spec.two_views:
        second = embeddings + 0.1 * torch.randn(embeddings.shape, generator=torch.Generator().manual_seed(1)).to(
            embeddings.device)
        # PML names the second view ref_emb, textdml ref_embeddings.
        keyword = "ref_embeddings" if type(module).__module__.startswith("textdml") else "ref_emb"

        def two_view_step() -> None:
            x = embeddings.detach().requires_grad_()
            module(x, **{keyword: second}).backward()

        return two_view_step

    def step() -> None:
        x = embeddings.detach().requires_grad_()
        if pml_side and spec.pml_labels_as_indices:
            module(x, indices_tuple=labels).backward()
        else:
            module(x, labels).backward()

    return step


def timed(step: Callable, device: str) -> float:
    """Milliseconds of one call, the device synchronised before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def compare(our_step: Callable, their_step: Callable, spec: Spec, device: str, repeats: int) -> tuple[float, float, int]:
    """Median ms of ours and of PML's, interleaved; returns (ours, PML, PML repeats)."""
    our_warm = min(timed(our_step, device) for _ in range(spec.warmup))
    their_warm = timed(their_step, device)
    if their_warm > SLOW_PML_MS:
        # Seconds per call: the first-call overhead is noise, and more runs would cost minutes.
        return statistics.median(timed(our_step, device) for _ in range(repeats)), their_warm, 1
    their_warm = min([their_warm] + [timed(their_step, device) for _ in range(spec.warmup - 1)])
    # Short calls are noisier: give them more repeats (still well under a second in all).
    repeats = max(repeats, min(25, int(200 / max(our_warm + their_warm, 1e-3))))
    our_times, their_times = [], []
    for _ in range(repeats):
        our_times.append(timed(our_step, device))
        their_times.append(timed(their_step, device))
    return statistics.median(our_times), statistics.median(their_times), repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="B=256, D=384 only")
    parser.add_argument("--only", action="append", metavar="NAME", help="a spec name (repeatable)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=7, help="at least this many timed runs per side")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = SIZES[:1] if args.quick else SIZES
    specs = [spec for spec in SPECS if matches(spec, args.only)]
    if not specs:
        parser.error(f"no spec matches {args.only}; names: {', '.join(s.name for s in SPECS)}")

    print(f"device={args.device} threads={torch.get_num_threads()} median of >= {args.repeats} interleaved runs\n")
    print(f"{'name':<34}{'B':>6}{'D':>6}{'textdml ms':>12}{'PML ms':>10}{'speed-up':>10}")
    slower, started = [], time.perf_counter()
    for spec in specs:
        last_pml: tuple[float, int, int] | None = None  # PML's (ms, batch, dim) at the previous size
        for batch, dim in sizes:
            generator = torch.Generator().manual_seed(0)
            embeddings = torch.randn(batch, dim, generator=generator).to(args.device)
            labels = (torch.arange(batch) // spec.rows_per_class).to(args.device)
            mine, theirs = build_pair(spec, batch // spec.rows_per_class, dim, args.device)
            our_step = make_step(mine, spec, embeddings, labels)
            their_step = make_step(theirs, spec, embeddings, labels, pml_side=True)
            row = f"{spec.name:<34}{batch:>6}{dim:>6}"
            expected_pml_ms = last_pml[0] * (batch / last_pml[1]) ** 2 if last_pml else 0.0
            if expected_pml_ms > SLOW_PML_MS:
                our_ms = statistics.median(timed(our_step, args.device) for _ in range(args.repeats))
                took = f"{last_pml[0] / 1000:.2f} s at B={last_pml[1]} D={last_pml[2]}"
                print(f"{row}{our_ms:>12.2f}{'skipped':>10}   PML: ~{expected_pml_ms / 1000:.1f} s expected ({took})",
                      flush=True)
                continue
            try:
                our_ms, their_ms, their_runs = compare(our_step, their_step, spec, args.device, args.repeats)
            except torch.OutOfMemoryError as err:
                print(f"{row}{'out of memory':>28}   {str(err)[:60]}", flush=True)
                continue
            last_pml = (their_ms, batch, dim)
            note = "   (PML: 1 run)" if their_runs == 1 else ""
            speedup = their_ms / our_ms
            if speedup < 0.95:
                slower.append(f"{spec.name} B={batch} D={dim} ({speedup:.2f}x)")
            print(f"{row}{our_ms:>12.2f}{their_ms:>10.2f}{speedup:>9.2f}x{note}", flush=True)
    print(f"\nslower than PML (speed-up < 0.95): {', '.join(slower) if slower else 'none'}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
