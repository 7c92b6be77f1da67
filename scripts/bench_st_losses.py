"""Forward + backward time of textdml's sentence-transformers-family losses vs ST's, same tensors.

What is timed, on both sides: the loss's forward and backward on embeddings that are leaves of the
graph (the model is not run), from the same random tensors, with the same settings. The frozen
model's part is an input on both sides: the teacher's precomputed scores / margins (MarginMSE,
DistillKLDiv: ST's ``labels``), the teacher's embeddings (MSE) or the guide's (GISTEmbed, which
both sides turn into similarities inside the timed call). Our losses take the candidate columns
as one ``ref_embeddings`` tensor, so our side also pays the ``torch.cat`` of the columns that our
task does before calling the loss (and its backward); ST's takes them as a list. Both losses are
built once, outside the timed calls. Before timing, each pair is checked to give the same value,
so that a row never compares different work.

Each case is warmed up, then timed in ``--repeats`` rounds; a round times both sides one after
the other, in alternating order (ours first, then ST first) to cancel drift from other jobs, and
each timing runs the step enough times to last about ``--min-ms``. Printed: the medians, and the
speed ``ST ms / textdml ms`` (the median of the per-round ratios; above 1: textdml is faster).
On a machine shared with other jobs, ``--threads 1`` keeps the numbers steady: two threads
contending for busy cores make every small kernel wait (tens of times slower, both sides alike).
CachedGISTEmbed is GISTEmbed's loss with GradCache in the trainer (the same forward), and the
denoising auto-encoder's cost is its decoder's, so neither has a row of its own. Example:

    python scripts/bench_st_losses.py --batch 1024 --dim 384 --repeats 20
    python scripts/bench_st_losses.py --only margin_mse distill_kl_div --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from sentence_transformers.base.losses.merged_forward import column_merging_disabled
from sentence_transformers.sentence_transformer import losses as st
from sentence_transformers.util import pairwise_cos_sim
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout's textdml, not an installed one

from tests.losses.pair_checks import Precomputed, bare_st_loss  # noqa: E402  (ST losses without a real model)

SLOW_MS = 1000.0  # a pair of first calls slower than this is timed in 3 rounds of one call
Step = Callable[..., torch.Tensor]  # (anchors, positives, negatives) -> scalar loss


def st_gist() -> st.GISTEmbedLoss:
    return bare_st_loss(st.GISTEmbedLoss, model=Precomputed("emb"), guide=Precomputed("guide"), must_retokenize=False,
                        similarity_fct=nn.CosineSimilarity(dim=-1), cross_entropy_loss=nn.CrossEntropyLoss(),
                        gather_across_devices=False, temperature=0.01, margin_strategy="absolute", margin=0.0,
                        contrast_anchors=True, contrast_positives=True)


def cosine_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=-1) @ nn.functional.normalize(y, dim=-1).T


def st_tension() -> st.ContrastiveTensionLossInBatchNegatives:
    return bare_st_loss(st.ContrastiveTensionLossInBatchNegatives, model1=Precomputed("twin"),
                        model2=Precomputed("model"), cross_entropy_loss=nn.CrossEntropyLoss(),
                        similarity_fct=cosine_matrix, logit_scale=nn.Parameter(torch.tensor(20.0).log()))


def cases(b: int, d: int) -> dict[str, tuple[Step, Step]]:
    """``name -> (our step, ST's step)``, each taking the (anchors, positives, negatives) leaves."""
    from textdml.losses.angle import AnglELoss
    from textdml.losses.contrastive_tension import ContrastiveTensionLoss
    from textdml.losses.cosent import CoSENTLoss
    from textdml.losses.distill_kl_div import DistillKLDivLoss
    from textdml.losses.gist_embed import GISTEmbedLoss
    from textdml.losses.margin_mse import MarginMSELoss
    from textdml.losses.mega_batch_margin import MegaBatchMarginLoss
    from textdml.losses.mse import MSELoss

    gen = torch.Generator().manual_seed(1)
    ta, tp, tn = (torch.randn(b, d, generator=gen) for _ in range(3))
    scores = torch.rand(b, generator=gen)
    margin_mse, kl_div = MarginMSELoss(similarity="cosine"), DistillKLDivLoss(similarity="cosine")
    with torch.no_grad():
        margins = margin_mse.margins(ta, torch.cat([tp, tn]))  # the teacher's, precomputed on both sides
        kl_teacher = kl_div.scores(ta, torch.cat([tp, tn]))
    cosent, angle, mse, mega, tension, gist = (CoSENTLoss(), AnglELoss(), MSELoss(), MegaBatchMarginLoss(),
                                              ContrastiveTensionLoss(), GISTEmbedLoss())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st_kl = st.DistillKLDivLoss(model=None, similarity_fct=pairwise_cos_sim)
    st_cosent, st_angle, st_mse = st.CoSENTLoss(model=None), st.AnglELoss(model=None), st.MSELoss(model=None)
    st_margin_mse = st.MarginMSELoss(model=None, similarity_fct=pairwise_cos_sim)
    st_mega = bare_st_loss(st.MegaBatchMarginLoss, positive_margin=0.8, negative_margin=0.3, mini_batch_size=b)
    st_ct, st_gist_loss = st_tension(), st_gist()
    rows = torch.arange(b)
    return {
        "cosent": (lambda x, y, z: cosent(x, scores, ref_embeddings=y),
                   lambda x, y, z: st_cosent.compute_loss_from_embeddings([x, y], scores)),
        "angle": (lambda x, y, z: angle(x, scores, ref_embeddings=y),
                  lambda x, y, z: st_angle.compute_loss_from_embeddings([x, y], scores)),
        "mse": (lambda x, y, z: mse(x, ref_embeddings=y, teacher_embeddings=ta, teacher_ref_embeddings=tp),
                lambda x, y, z: st_mse.compute_loss_from_embeddings([x, y], [ta, tp])),
        "margin_mse": (lambda x, y, z: margin_mse(x, ref_embeddings=torch.cat([y, z]), teacher_margins=margins),
                       lambda x, y, z: st_margin_mse.compute_loss_from_embeddings([x, y, z], margins)),
        "distill_kl_div": (lambda x, y, z: kl_div(x, ref_embeddings=torch.cat([y, z]), teacher_scores=kl_teacher),
                           lambda x, y, z: st_kl.compute_loss_from_embeddings([x, y, z], kl_teacher)),
        "mega_batch_margin": (lambda x, y, z: mega(x, ref_embeddings=y),
                              lambda x, y, z: st_mega.calculate_loss([[x], [y]])),
        "contrastive_tension": (lambda x, y, z: tension(x, rows, ref_embeddings=y, ref_labels=rows),
                                lambda x, y, z: st_ct([{"twin": x, "model": y}], None)),
        "gist_embed": (lambda x, y, z: gist(x, ref_embeddings=torch.cat([y, z]), teacher_embeddings=ta,
                                            teacher_ref_embeddings=torch.cat([tp, tn])),
                       lambda x, y, z: st_gist_loss([{"emb": x, "guide": ta}, {"emb": y, "guide": tp},
                                                     {"emb": z, "guide": tn}], None)),
    }


def timed(step: Step, leaves: list[torch.Tensor], calls: int) -> float:
    """Mean ms of ``calls`` forward + backward steps (the gradients reset each time, as a trainer does)."""
    start = time.perf_counter()
    for _ in range(calls):
        for leaf in leaves:
            leaf.grad = None
        step(*leaves).backward()
    return (time.perf_counter() - start) * 1e3 / calls


def first_call(step: Step, leaves: list[torch.Tensor]) -> tuple[float, float]:
    """(the loss value, ms) of one forward + backward step."""
    start = time.perf_counter()
    loss = step(*leaves)
    loss.backward()
    return loss.item(), (time.perf_counter() - start) * 1e3


def compare(ours: Step, theirs: Step, inputs: list[torch.Tensor], repeats: int, min_ms: float
            ) -> tuple[float, float, float]:
    """(our median ms, ST's median ms, median of ST / ours over the rounds)."""
    leaves = [x.clone().requires_grad_() for x in inputs]
    (ours_value, our_first), (their_value, their_first) = first_call(ours, leaves), first_call(theirs, leaves)
    if not math.isclose(ours_value, their_value, rel_tol=1e-4, abs_tol=1e-5):
        raise RuntimeError(f"the two sides disagree ({ours_value} vs {their_value}): not the same work")
    # ST's GISTEmbed builds an (N, M, D) tensor: seconds a call, where a few rounds tell.
    if our_first + their_first > SLOW_MS:
        repeats, calls = min(repeats, 3), 1
    else:
        warm = min(timed(ours, leaves, 1) + timed(theirs, leaves, 1) for _ in range(3))
        calls = max(1, math.ceil(2 * min_ms / max(warm, 1e-3)))
    mine, peer, ratios = [], [], []
    for round_ in range(repeats):
        if round_ % 2:
            their_ms, our_ms = timed(theirs, leaves, calls), timed(ours, leaves, calls)
        else:
            our_ms, their_ms = timed(ours, leaves, calls), timed(theirs, leaves, calls)
        mine.append(our_ms), peer.append(their_ms), ratios.append(their_ms / our_ms)
    return statistics.median(mine), statistics.median(peer), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--min-ms", type=float, default=20.0, help="shortest timing of one side in a round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(args.batch, args.dim, generator=gen) for _ in range(3)]  # anchors, positives, negatives
    print(f"batch {args.batch}, dim {args.dim}, {torch.get_num_threads()} threads, {args.repeats} interleaved "
          "rounds, forward + backward, CPU; speed = ST ms / textdml ms (above 1: textdml is faster)")
    print(f"{'loss':<20}{'textdml ms':>12}{'ST ms':>10}{'speed':>8}")
    with column_merging_disabled(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (ours, theirs) in cases(args.batch, args.dim).items():
            if args.only and name not in args.only:
                continue
            our_ms, their_ms, speed = compare(ours, theirs, inputs, args.repeats, args.min_ms)
            print(f"{name:<20}{our_ms:>12.2f}{their_ms:>10.2f}{speed:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
