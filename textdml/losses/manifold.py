from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from textdml.losses._margin_softmax import ClassLevelLoss, new_class_weights
from textdml.registry import LOSSES

# The similarity graph's kernel: edge weight exp(max(cos, 0) / SIGMA), as the paper's code.
SIGMA = 0.5


def proxy_margin_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """``mean_i log(1 + sum_{k != y_i, v_ik >= 0} e^{v_ik})`` with ``v_ik = scores_ik - scores_iy + margin``.

    Only the proxies that beat the row's own by more than ``-margin`` count (the others add 0,
    not a small ``e^v``), as the paper's code.
    """
    own = scores.gather(1, labels[:, None])  # (N, 1)
    violation = scores - own + margin  # (N, K)
    counted = (violation >= 0) & ~F.one_hot(labels, scores.shape[1]).bool()
    return torch.log1p(torch.where(counted, violation.exp(), 0.0).sum(dim=1)).mean()


@LOSSES.register("manifold")
class ManifoldLoss(ClassLevelLoss):
    """Manifold loss of Aziere and Todorovic: proxies compared along the data manifold, not straight lines.

    The rows and the class proxies form one graph, edge weights ``exp(max(cos, 0) / 0.5)``. A
    random walk with restart on it (closed form: ``F = (1 - alpha) (I - alpha S_norm)^-1``)
    gives each row a manifold similarity to each proxy. The intrinsic term asks a row to be
    more similar to its own proxy than to any other by ``margin``; the context term asks the
    same of the cosine between a row's and the proxies' whole similarity profiles.

    Formula: ``L = L_int(F_xp) + lambda_c L_ctx(cos(F_x, F_p))``, each ``mean_i log(1 + sum_{k != y_i, v_ik >= 0} e^{v_ik})``, ``v_ik = s_ik - s_iy_i + margin``.

    Args:
        num_classes: the number of proxies (filled by the trainer from the data; the paper
            assigns rows to proxies by clustering, a class per proxy is the supervised case).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        lambda_c: the weight of the context term; ``0`` is the intrinsic term alone,
            ``float('inf')`` the context term alone.
        alpha: the random walk's continuation probability, in (0, 1).
        margin: the margin on both terms (5e-4 as pytorch-metric-learning).

    Inputs:
        Labelled rows whose labels are proxy ids ``0 .. num_classes - 1``. ``ref_embeddings`` /
        ``ref_labels`` are more labelled rows.

    Requirements:
        The proxies are parameters of the loss: give them an optimiser group
        (``parameter_groups``). The cost is an (N + K) x (N + K) matrix inverse.

    Conventions:
        ``num_classes``, ``embedding_size`` and ``lambda_c`` are pytorch-metric-learning's ``K``,
        ``l`` and ``lambdaC``. Matches PML's ManifoldLoss given the labels as its meta-classes
        (``indices_tuple``); PML's random meta-classes when none are given are not reproduced
        (labels are required). ``weight`` holds the proxies like PML's ``proxies``, ``N(0, 1)``
        initialised. ``lambda_c=inf`` gives the context term alone (PML multiplies it by inf).

    References:
        Aziere and Todorovic, "Ensemble Deep Manifold Similarity Learning using Hard Proxies",
        CVPR 2019.

    Example:
        >>> import torch
        >>> loss = ManifoldLoss(num_classes=3, embedding_size=8)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{aziere2019ensemble,
  title={Ensemble Deep Manifold Similarity Learning using Hard Proxies},
  author={Aziere, Nicolas and Todorovic, Sinisa},
  booktitle={CVPR},
  year={2019}
}"""

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        lambda_c: float = 1.0,
        alpha: float = 0.8,
        margin: float = 5e-4,
    ):
        super().__init__(num_classes, embedding_size)
        if lambda_c < 0:
            raise ValueError(f"ManifoldLoss: lambda_c must be >= 0 (inf for the context term alone), got {lambda_c}")
        if not 0 < alpha < 1:
            raise ValueError(f"ManifoldLoss: alpha must be in (0, 1), got {alpha}")
        self.lambda_c = lambda_c
        self.alpha = alpha
        self.margin = margin
        self.weight = new_class_weights(num_classes, embedding_size, init="normal")

    def class_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = len(embeddings)
        nodes = F.normalize(torch.cat([embeddings, self.weight.to(embeddings.dtype)]), dim=1)  # (N + K, D)
        identity = torch.eye(len(nodes), dtype=nodes.dtype, device=nodes.device)
        # No self-loops; every other edge weighs at least e^0 = 1, so no degree is 0.
        affinity = torch.exp((nodes @ nodes.T).clamp_min(0) / SIGMA).masked_fill(identity.bool(), 0.0)
        inv_sqrt_degree = affinity.sum(dim=1).rsqrt()  # (N + K,)
        normalised = affinity * inv_sqrt_degree[:, None] * inv_sqrt_degree[None, :]  # D^-1/2 A D^-1/2
        walk = (1 - self.alpha) * torch.linalg.inv(identity - self.alpha * normalised)  # (N + K, N + K)
        loss = nodes.new_zeros(())
        if self.lambda_c != math.inf:
            loss = loss + proxy_margin_loss(walk[:n, n:], labels, self.margin)
        if self.lambda_c > 0:
            # Profiles: each row's and each proxy's manifold similarity to every node.
            context = F.normalize(walk[:n], dim=1) @ F.normalize(walk[n:], dim=1).T  # (N, K)
            weight = 1.0 if self.lambda_c == math.inf else self.lambda_c
            loss = loss + weight * proxy_margin_loss(context, labels, self.margin)
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
            f"lambda_c={self.lambda_c}, alpha={self.alpha}, margin={self.margin}"
        )
