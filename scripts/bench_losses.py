"""Losses and miners: textdml vs pytorch-metric-learning (PML), same embeddings, same settings.

Losses are timed forward + backward, miners mining only; the median of a few repeats after a
warm-up, for each (batch, dim). Labels give 8 rows per class (an m-per-class batch). Prints a table
of milliseconds and the speed-up (PML time / textdml time: above 1 means textdml is faster).

    python scripts/bench_losses.py            # B in (256, 1024), D in (384, 768)
    python scripts/bench_losses.py --quick    # B=256, D=384
    python scripts/bench_losses.py --only arc_face --device cuda
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

import textdml.losses as ours
import textdml.miners as our_miners

ROWS_PER_CLASS = 8  # rows per class in a batch
PEER_BUDGET_MS = 1500.0  # PML slower than this at the smallest batch is not run at larger ones


@dataclass
class Spec:
    name: str
    ours: Callable[[int, int], torch.nn.Module]  # (num_classes, dim) -> module
    theirs: Callable[[int, int], torch.nn.Module]
    kind: str = "loss"  # "loss", "class_loss" (own weights, copied from PML), "miner"


def copy_class_weights(our_loss: torch.nn.Module, pml_loss: torch.nn.Module) -> None:
    """Same class weights in both (PML stores them as (D, C) ``W`` or (C, D) proxies)."""
    theirs = next(iter(pml_loss.parameters())).detach()
    ours_weight = next(iter(our_loss.parameters()))
    with torch.no_grad():
        ours_weight.copy_(theirs if theirs.shape == ours_weight.shape else theirs.T)


SPECS = [
    Spec("contrastive", lambda c, d: ours.ContrastiveLoss(margin=1.0, distance="lp", power=1, reduction="mean_nonzero"),
         lambda c, d: pml_losses.ContrastiveLoss()),
    Spec("triplet", lambda c, d: ours.TripletLoss(), lambda c, d: pml_losses.TripletMarginLoss()),
    Spec("margin", lambda c, d: ours.MarginLoss(), lambda c, d: pml_losses.MarginLoss()),
    Spec("tuplet_margin", lambda c, d: ours.TupletMarginLoss(), lambda c, d: pml_losses.TupletMarginLoss()),
    Spec("angular", lambda c, d: ours.AngularLoss(), lambda c, d: pml_losses.AngularLoss()),
    Spec("n_pairs", lambda c, d: ours.NPairsLoss(distance="cosine_similarity", l2_reg=0.0),
         lambda c, d: pml_losses.NPairsLoss()),
    Spec("lifted_structure", lambda c, d: ours.LiftedStructureLoss(), lambda c, d: pml_losses.LiftedStructureLoss()),
    Spec("generalized_lifted_structure", lambda c, d: ours.GeneralizedLiftedStructureLoss(),
         lambda c, d: pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1, pos_margin=0)),
    Spec("nca", lambda c, d: ours.NCALoss(), lambda c, d: pml_losses.NCALoss()),
    Spec("multi_similarity", lambda c, d: ours.MultiSimilarityLoss(), lambda c, d: pml_losses.MultiSimilarityLoss()),
    Spec("ntxent", lambda c, d: ours.NTXentLoss(temperature=0.07), lambda c, d: pml_losses.NTXentLoss(0.07)),
    Spec("supervised_contrastive", lambda c, d: ours.SupervisedContrastiveLoss(temperature=0.1),
         lambda c, d: pml_losses.SupConLoss(0.1)),
    Spec("circle", lambda c, d: ours.CircleLoss(), lambda c, d: pml_losses.CircleLoss()),
    Spec("large_margin_softmax", lambda c, d: ours.LargeMarginSoftmaxLoss(num_classes=c, embedding_size=d),
         lambda c, d: pml_losses.LargeMarginSoftmaxLoss(c, d), "class_loss"),
    Spec("sphere_face", lambda c, d: ours.SphereFaceLoss(num_classes=c, embedding_size=d),
         lambda c, d: pml_losses.SphereFaceLoss(c, d), "class_loss"),
    Spec("cos_face", lambda c, d: ours.CosFaceLoss(num_classes=c, embedding_size=d),
         lambda c, d: pml_losses.CosFaceLoss(c, d), "class_loss"),
    Spec("arc_face", lambda c, d: ours.ArcFaceLoss(num_classes=c, embedding_size=d, margin=math.radians(28.6)),
         lambda c, d: pml_losses.ArcFaceLoss(c, d, margin=28.6), "class_loss"),
    Spec("norm_softmax", lambda c, d: ours.NormSoftmaxLoss(num_classes=c, embedding_size=d),
         lambda c, d: pml_losses.NormalizedSoftmaxLoss(c, d), "class_loss"),
    Spec("proxy_nca", lambda c, d: ours.ProxyNCALoss(num_classes=c, embedding_size=d),
         lambda c, d: pml_losses.ProxyNCALoss(c, d), "class_loss"),
    Spec("proxy_anchor", lambda c, d: ours.ProxyAnchorLoss(num_classes=c, embedding_size=d),
         lambda c, d: pml_losses.ProxyAnchorLoss(c, d), "class_loss"),
    Spec("soft_triple", lambda c, d: ours.SoftTripleLoss(num_classes=c, embedding_size=d, tau=0.0),
         lambda c, d: pml_losses.SoftTripleLoss(c, d), "class_loss"),
    Spec("miner:triplet_margin(semihard)", lambda c, d: our_miners.TripletMarginMiner(0.2, "semihard"),
         lambda c, d: pml_miners.TripletMarginMiner(0.2, type_of_triplets="semihard"), "miner"),
    Spec("miner:batch_hard", lambda c, d: our_miners.BatchHardMiner(), lambda c, d: pml_miners.BatchHardMiner(),
         "miner"),
    Spec("miner:batch_easy_hard", lambda c, d: our_miners.BatchEasyHardMiner(),
         lambda c, d: pml_miners.BatchEasyHardMiner(), "miner"),
    Spec("miner:angular", lambda c, d: our_miners.AngularMiner(20.0), lambda c, d: pml_miners.AngularMiner(20),
         "miner"),
    Spec("miner:distance_weighted", lambda c, d: our_miners.DistanceWeightedMiner(0.5, 1.4),
         lambda c, d: pml_miners.DistanceWeightedMiner(0.5, 1.4), "miner"),
    Spec("miner:hdc", lambda c, d: our_miners.HDCMiner(0.5), lambda c, d: pml_miners.HDCMiner(0.5), "miner"),
    Spec("miner:multi_similarity", lambda c, d: our_miners.MultiSimilarityMiner(0.1),
         lambda c, d: pml_miners.MultiSimilarityMiner(0.1), "miner"),
    Spec("miner:pair_margin", lambda c, d: our_miners.PairMarginMiner(0.2, 0.8),
         lambda c, d: pml_miners.PairMarginMiner(0.2, 0.8), "miner"),
]
del pml_distances  # imported so that PML's distance registry is loaded before timing


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(step: Callable[[], None], device: str, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def make_step(module: torch.nn.Module, kind: str, embeddings: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    if kind == "miner":
        return lambda: module(embeddings, labels)

    def step() -> None:
        x = embeddings.detach().requires_grad_()
        module(x, labels).backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="B=256, D=384 only")
    parser.add_argument("--only", action="append", help="a spec name (repeatable)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [(256, 384)] if args.quick else [(256, 384), (256, 768), (1024, 384), (1024, 768)]
    specs = [s for s in SPECS if not args.only or s.name in args.only or s.name.removeprefix("miner:") in args.only]
    print(f"device={args.device} threads={torch.get_num_threads()} repeats={args.repeats} "
          f"({ROWS_PER_CLASS} rows per class)\n")
    print(f"{'name':<32}{'B':>6}{'D':>6}{'textdml ms':>12}{'PML ms':>10}{'speed-up':>10}")
    slower: list[str] = []
    slow_peer: dict[str, float] = {}  # the slowest PML time seen per spec, to skip hopeless larger runs
    for spec in specs:
        for batch, dim in sizes:
            generator = torch.Generator().manual_seed(0)
            embeddings = torch.randn(batch, dim, generator=generator).to(args.device)
            labels = (torch.arange(batch) // ROWS_PER_CLASS).to(args.device)
            num_classes = batch // ROWS_PER_CLASS
            mine, theirs = spec.ours(num_classes, dim).to(args.device), spec.theirs(num_classes, dim).to(args.device)
            if spec.kind == "class_loss":
                copy_class_weights(mine, theirs)
            ours_ms = time_call(make_step(mine, spec.kind, embeddings, labels), args.device, args.repeats)
            if slow_peer.get(spec.name, 0) > PEER_BUDGET_MS and batch > min(b for b, _ in sizes):
                print(f"{spec.name:<32}{batch:>6}{dim:>6}{ours_ms:>12.2f}{'skipped':>10}  (PML took "
                      f"{slow_peer[spec.name] / 1000:.1f} s at the smaller batch)", flush=True)
                continue
            try:
                pml_ms = time_call(make_step(theirs, spec.kind, embeddings, labels), args.device, args.repeats)
            except RuntimeError as err:  # e.g. PML's tuplet margin loss asks for 30 GB at B=1024
                print(f"{spec.name:<32}{batch:>6}{dim:>6}{ours_ms:>12.2f}{'failed':>10}  ({str(err)[:60]})", flush=True)
                continue
            slow_peer[spec.name] = max(slow_peer.get(spec.name, 0), pml_ms)
            speedup = pml_ms / ours_ms
            if speedup < 0.95:
                slower.append(f"{spec.name} B={batch} D={dim}")
            print(f"{spec.name:<32}{batch:>6}{dim:>6}{ours_ms:>12.2f}{pml_ms:>10.2f}{speedup:>9.2f}x", flush=True)
    print(f"\nslower than PML (speed-up < 0.95): {', '.join(slower) if slower else 'none'}")


if __name__ == "__main__":
    main()
