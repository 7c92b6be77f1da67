"""Forward + backward time of textdml's sentence-transformers-family losses vs ST's, same tensors.

Both sides get the same embeddings (and teacher / guide embeddings, scores); runs are interleaved
and the median of each is compared. Prints ``ours / ST`` (below 1 is faster). Example:

    python scripts/bench_st_losses.py --batch 1024 --dim 384 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from sentence_transformers.base.losses.merged_forward import column_merging_disabled
from sentence_transformers.sentence_transformer import losses as st
from sentence_transformers.util import pairwise_cos_sim
from torch import nn


class Precomputed(nn.Module):
    """A stand-in ST model: returns the embeddings stored under ``key``."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def forward(self, features):
        return {"sentence_embedding": features[self.key]}


def st_gist() -> st.GISTEmbedLoss:
    loss = st.GISTEmbedLoss.__new__(st.GISTEmbedLoss)
    nn.Module.__init__(loss)
    loss.model, loss.guide, loss.must_retokenize = Precomputed("emb"), Precomputed("guide"), False
    loss.similarity_fct, loss.cross_entropy_loss = nn.CosineSimilarity(dim=-1), nn.CrossEntropyLoss()
    loss.gather_across_devices, loss.temperature = False, 0.01
    loss.margin_strategy, loss.margin, loss.contrast_anchors, loss.contrast_positives = "absolute", 0.0, True, True
    return loss


def cases(b: int, d: int) -> dict[str, tuple[Callable, Callable, list[torch.Tensor]]]:
    from textdml.losses.angle import AnglELoss
    from textdml.losses.contrastive_tension import ContrastiveTensionLoss
    from textdml.losses.cosent import CoSENTLoss
    from textdml.losses.distill_kl_div import DistillKLDivLoss
    from textdml.losses.gist_embed import GISTEmbedLoss
    from textdml.losses.margin_mse import MarginMSELoss
    from textdml.losses.mega_batch_margin import MegaBatchMarginLoss
    from textdml.losses.mse import MSELoss

    gen = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(b, d, generator=gen) for _ in range(3))
    ta, tp, tn = (torch.randn(b, d, generator=gen) for _ in range(3))
    scores = torch.rand(b, generator=gen)
    kl_teacher = DistillKLDivLoss(similarity="cosine").scores(ta, torch.cat([tp, tn]))
    margins = MarginMSELoss(similarity="cosine").margins(ta, torch.cat([tp, tn]))
    mega = st.MegaBatchMarginLoss.__new__(st.MegaBatchMarginLoss)
    nn.Module.__init__(mega)
    mega.positive_margin, mega.negative_margin, mega.mini_batch_size = 0.8, 0.3, b
    gist = st_gist()
    tension = st.ContrastiveTensionLossInBatchNegatives.__new__(st.ContrastiveTensionLossInBatchNegatives)
    nn.Module.__init__(tension)
    tension.model1, tension.model2 = Precomputed("twin"), Precomputed("model")
    tension.similarity_fct = lambda x, y: torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T
    tension.cross_entropy_loss, tension.logit_scale = nn.CrossEntropyLoss(), nn.Parameter(torch.tensor(20.0).log())
    ours_tension, rows = ContrastiveTensionLoss(), torch.arange(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st_kl = st.DistillKLDivLoss(model=None, similarity_fct=pairwise_cos_sim)
    return {
        "cosent": (lambda x, y, z: CoSENTLoss()(x, scores, ref_embeddings=y),
                   lambda x, y, z: st.CoSENTLoss(model=None).compute_loss_from_embeddings([x, y], scores), [a, p, n]),
        "angle": (lambda x, y, z: AnglELoss()(x, scores, ref_embeddings=y),
                  lambda x, y, z: st.AnglELoss(model=None).compute_loss_from_embeddings([x, y], scores), [a, p, n]),
        "mse": (lambda x, y, z: MSELoss()(x, ref_embeddings=y, teacher_embeddings=ta, teacher_ref_embeddings=tp),
                lambda x, y, z: st.MSELoss(model=None).compute_loss_from_embeddings([x, y], [ta, tp]), [a, p, n]),
        "margin_mse": (lambda x, y, z: MarginMSELoss(similarity="cosine")(x, ref_embeddings=torch.cat([y, z]),
                                                                         teacher_margins=margins),
                       lambda x, y, z: st.MarginMSELoss(model=None, similarity_fct=pairwise_cos_sim)
                       .compute_loss_from_embeddings([x, y, z], margins), [a, p, n]),
        "distill_kl_div": (lambda x, y, z: DistillKLDivLoss(similarity="cosine")(x, ref_embeddings=torch.cat([y, z]),
                                                                                teacher_scores=kl_teacher),
                           lambda x, y, z: st_kl.compute_loss_from_embeddings([x, y, z], kl_teacher), [a, p, n]),
        "mega_batch_margin": (lambda x, y, z: MegaBatchMarginLoss()(x, ref_embeddings=y),
                              lambda x, y, z: mega.calculate_loss([[x], [y]]), [a, p, n]),
        "contrastive_tension": (lambda x, y, z: ours_tension(x, rows, ref_embeddings=y, ref_labels=rows),
                                lambda x, y, z: tension([{"twin": x, "model": y}], None), [a, p, n]),
        "gist_embed": (lambda x, y, z: GISTEmbedLoss()(x, ref_embeddings=torch.cat([y, z]), teacher_embeddings=ta,
                                                       teacher_ref_embeddings=torch.cat([tp, tn])),
                       lambda x, y, z: gist([{"emb": x, "guide": ta}, {"emb": y, "guide": tp}, {"emb": z, "guide": tn}],
                                            None), [a, p, n]),
    }


def timed(fn: Callable, inputs: list[torch.Tensor]) -> float:
    leaves = [x.clone().requires_grad_() for x in inputs]
    start = time.perf_counter()
    fn(*leaves).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"batch {args.batch}, dim {args.dim}, {args.repeats} interleaved repeats, forward + backward, CPU")
    print(f"{'loss':<20}{'textdml ms':>12}{'ST ms':>10}{'ratio':>8}")
    with column_merging_disabled(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (ours, theirs, inputs) in cases(args.batch, args.dim).items():
            if args.only and name not in args.only:
                continue
            timed(ours, inputs), timed(theirs, inputs)  # warm-up
            mine, peer = [], []
            for _ in range(args.repeats):
                mine.append(timed(ours, inputs))
                peer.append(timed(theirs, inputs))
            m, p = statistics.median(mine) * 1e3, statistics.median(peer) * 1e3
            print(f"{name:<20}{m:>12.2f}{p:>10.2f}{m / p:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
