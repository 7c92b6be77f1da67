"""Everything that touches ``torch.distributed``: rank queries, gathers, and the cross-device loss.

In-batch negatives grow with the number of devices when each device compares its own anchors
with the reference rows of every device (the *local loss* of open_clip). Memory stays linear:
each device holds a ``(local N, global M)`` similarity matrix, never ``(global N, global M)``.

Gradient scaling (why each device's loss is a plain mean over its own anchors):

The gather's backward sums the gradients that every device's loss sends to a row, so the
gradient on device r's embeddings is ``d(sum_r' L_r') / d x_r``. DDP then *averages* the
parameter gradients over the W devices, so training descends ``(1 / W) * sum_r L_r``. For that
to equal the single-process loss ``L`` on the concatenated batch, ``sum_r L_r = W * L``:

- A loss that is a mean over anchors (InfoNCE, and pair or triplet losses with
  ``reduction="mean"`` when every device has the same number of pairs or triplets, e.g. equal
  per-device batches of pairs) needs nothing: with equal per-device batches, ``L_r``, the mean
  over local anchors, is already right.
- Unequal per-device batches: multiply ``L_r`` by ``W * n_r / N`` (``n_r`` local, ``N`` global
  number of loss terms).
- ``reduction="sum"``: multiply ``L_r`` by ``W``.
- ``mean_nonzero`` averages over a count that differs per device; it is then a per-device mean
  (the usual DDP behaviour), close to but not exactly the single-process value.

Equivalently: the gradient on each device's embeddings is W times the single-process gradient of
those rows, and DDP's 1/W brings it back.

Example:
    >>> import torch
    >>> from textdml.losses.info_nce import InfoNCELoss
    >>> anchors, positives = torch.randn(4, 8), torch.randn(4, 8)
    >>> kwargs = gather_for_loss(anchors, ref_embeddings=positives)  # no-op on one process
    >>> sorted(kwargs)
    ['embeddings', 'labels', 'ref_embeddings', 'ref_labels']
    >>> compute_local_loss(InfoNCELoss(), anchors, ref_embeddings=positives).shape
    torch.Size([])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from textdml.indices import PairIndices, TripletIndices, TupleIndices, all_pairs


def is_distributed() -> bool:
    """Whether a process group is initialised (a multi-process run)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes, 1 outside a distributed run."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's index, 0 outside a distributed run."""
    return dist.get_rank() if is_distributed() else 0


def _all_gather_equal(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor``, which has the same shape on every rank."""
    buffers = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(buffers, tensor.contiguous())
    return torch.cat(buffers)


def all_gather_sizes(size: int, device: torch.device | str) -> list[int]:
    """Every rank's ``size`` (e.g. its number of rows), in rank order.

    ``device`` must suit the backend: CUDA for NCCL, CPU for gloo (the gathered tensor's device).
    """
    if world_size() == 1:
        return [size]
    return _all_gather_equal(torch.tensor([size], device=device)).tolist()


def _all_gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0; ranks may hold different numbers of rows."""
    # all_gather needs equal shapes: pad every tensor to the largest, then trim each slice.
    longest = max(sizes)
    padding = tensor.new_zeros((longest - len(tensor), *tensor.shape[1:]))
    padded = torch.cat([tensor, padding]).contiguous()
    buffers = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(buffers, padded)
    return torch.cat([buffer[:size] for buffer, size in zip(buffers, sizes, strict=True)])


def _check_gatherable(tensor: torch.Tensor) -> None:
    if tensor.ndim == 0:
        raise ValueError("cannot gather a 0-dim tensor; gather tensors with a first (row) dimension")


def all_gather_no_grad(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order, without gradient (labels, counts, miner input).

    Args:
        tensor: ``(n, ...)``; ``n`` may differ between ranks.
        sizes: every rank's ``n`` when already known (saves one collective).
    """
    _check_gatherable(tensor)
    if world_size() == 1:
        return tensor.detach()
    if sizes is None:
        sizes = all_gather_sizes(len(tensor), tensor.device)
    with torch.no_grad():
        return _all_gather_padded(tensor.detach(), sizes)


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each rank the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes = sizes
        ctx.rank = rank()
        return _all_gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        # Each rank's loss used every rank's rows: sum their gradients, then keep our slice.
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order, with gradient flowing back to each owner.

    Each rank's loss counts as one part of a global loss: the backward all-reduces (sums) the
    gradient of the gathered tensor over ranks and returns this rank's slice.

    Args:
        tensor: ``(n, ...)``; ``n`` may differ between ranks (padded for the collective, then trimmed).
        sizes: every rank's ``n`` when already known (saves one collective).
    """
    _check_gatherable(tensor)
    if world_size() == 1:
        return tensor
    if sizes is None:
        sizes = all_gather_sizes(len(tensor), tensor.device)
    return _AllGatherWithGrad.apply(tensor, sizes)


def _all_gather_counts(anchor_count: int, ref_count: int, device: torch.device) -> torch.Tensor:
    """``(W, 2)``: every rank's number of anchors and of reference rows."""
    counts = torch.tensor([[anchor_count, ref_count]], device=device)
    return _all_gather_equal(counts).cpu()


def resolve_global_labels(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None,
    ref_embeddings: torch.Tensor | None,
    ref_labels: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Labels for this rank's rows that stay unique across ranks.

    Given labels (labelled data, text ids) are kept. Pair-layout batches (``labels=None``, rows
    pair by position with ``ref_embeddings``) get anchor i of rank r the label ``offset_r + i``,
    where ``offset_r`` counts the anchors of lower ranks; its positive (ref row i) shares it, and
    ref rows past the anchors (hard negatives) get labels no anchor has. On one process this is
    exactly how the loss base pairs rows by position.

    Returns:
        ``(labels, ref_labels)`` for the local rows (``ref_labels`` is None without a ref).
    """
    device = embeddings.device
    if labels is not None:
        return labels.to(device), None if ref_labels is None else ref_labels.to(device)
    if ref_embeddings is None:
        raise ValueError("labels=None pairs rows by position and needs ref_embeddings")
    if ref_labels is not None:
        raise ValueError("ref_labels were given without labels")
    n, m = len(embeddings), len(ref_embeddings)
    if m < n:
        raise ValueError(f"pairing by position needs at least as many ref rows ({m}) as embeddings ({n})")
    if world_size() == 1:
        return torch.arange(n, device=device), torch.arange(m, device=device)
    counts = _all_gather_counts(n, m, device)
    me = rank()
    anchor_offset, total_anchors = int(counts[:me, 0].sum()), int(counts[:, 0].sum())
    ref_offset = int(counts[:me, 1].sum())
    labels = torch.arange(n, device=device) + anchor_offset
    # Hard negatives: above every anchor label, one per ref row of the whole world.
    negatives = torch.arange(n, m, device=device) + total_anchors + ref_offset
    return labels, torch.cat([labels, negatives])


def gather_for_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None = None,
    ref_embeddings: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
    *,
    indices: TupleIndices | None = None,
    miner: Any | None = None,
) -> dict[str, Any]:
    """Loss keyword arguments in which this rank's anchors meet every rank's reference rows.

    Local rows stay the anchors; the reference set becomes all ranks' ``ref_embeddings`` (or all
    ranks' ``embeddings`` when there is no ref), gathered with gradient. Labels of pair-layout
    batches are offset by rank (see :func:`resolve_global_labels`); given labels are gathered as
    they are. On one process the inputs come back as they are, with pair labels made explicit.

    Args:
        embeddings: ``(n, D)`` this rank's anchors.
        labels: ``(n,)`` or None for the pair layout.
        ref_embeddings: ``(m, D)`` this rank's reference rows (positives then hard negatives).
        ref_labels: ``(m,)``, with ``labels``.
        indices: tuples over the *local* rows (e.g. a dataset's explicit pairs); their reference
            side is shifted to this rank's rows in the gathered set.
        miner: a miner to run on the gathered set (anchors against every rank's rows).

    Returns:
        ``embeddings``, ``labels``, ``ref_embeddings``, ``ref_labels`` and, when tuples apply,
        ``indices``: ready for ``loss(**kwargs)`` with any loss of ``textdml.losses``.

    Without ``ref_embeddings`` the gathered set contains each anchor itself, which the loss
    contract only excludes when there is no ref: the returned ``indices`` then hold every tuple
    except self-comparisons, so such batches need a loss that ``accepts_indices``.
    """
    if indices is not None and miner is not None:
        raise ValueError("pass either explicit indices or a miner, not both")
    labels, ref_labels = resolve_global_labels(embeddings, labels, ref_embeddings, ref_labels)
    if world_size() == 1:
        kwargs: dict[str, Any] = {"embeddings": embeddings, "labels": labels,
                                  "ref_embeddings": ref_embeddings, "ref_labels": ref_labels}
        if miner is not None:
            indices = miner(embeddings, labels, ref_embeddings, ref_labels)
        if indices is not None:
            kwargs["indices"] = indices
        return kwargs

    has_ref = ref_embeddings is not None
    local_ref = ref_embeddings if has_ref else embeddings
    local_ref_labels = ref_labels if has_ref else labels
    assert local_ref_labels is not None
    counts = _all_gather_counts(len(embeddings), len(local_ref), embeddings.device)
    ref_sizes = counts[:, 1].tolist()
    ref_offset = sum(ref_sizes[: rank()])
    kwargs = {
        "embeddings": embeddings,
        "labels": labels,
        "ref_embeddings": all_gather_with_grad(local_ref, ref_sizes),
        "ref_labels": all_gather_no_grad(local_ref_labels, ref_sizes),
    }
    if indices is not None:
        indices = shift_reference_side(indices, ref_offset)
    elif miner is not None:
        indices = miner(embeddings, labels, kwargs["ref_embeddings"], kwargs["ref_labels"])
    elif not has_ref:
        indices = all_pairs(labels, kwargs["ref_labels"])
    if indices is not None:
        kwargs["indices"] = indices if has_ref else drop_self_comparisons(indices, ref_offset)
    return kwargs


def shift_reference_side(indices: TupleIndices, offset: int) -> TupleIndices:
    """Move the reference-side indices of local tuples to this rank's rows in the gathered set."""
    if isinstance(indices, PairIndices):
        return PairIndices(indices.anchor_pos, indices.positive + offset, indices.anchor_neg, indices.negative + offset)
    return TripletIndices(indices.anchor, indices.positive + offset, indices.negative + offset)


def drop_self_comparisons(indices: TupleIndices, offset: int) -> TupleIndices:
    """Remove tuples that compare anchor i with itself, which sits at ``offset + i`` in the gathered set."""
    if isinstance(indices, PairIndices):
        keep_pos = indices.positive != indices.anchor_pos + offset
        keep_neg = indices.negative != indices.anchor_neg + offset
        return PairIndices(indices.anchor_pos[keep_pos], indices.positive[keep_pos],
                           indices.anchor_neg[keep_neg], indices.negative[keep_neg])
    self_row = indices.anchor + offset
    keep = (indices.positive != self_row) & (indices.negative != self_row)
    return TripletIndices(indices.anchor[keep], indices.positive[keep], indices.negative[keep])


def compute_local_loss(
    loss: torch.nn.Module,
    embeddings: torch.Tensor,
    labels: torch.Tensor | None = None,
    ref_embeddings: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
    *,
    indices: TupleIndices | None = None,
    miner: Any | None = None,
    symmetric: bool | None = None,
    accepts_indices: bool | None = None,
) -> torch.Tensor:
    """The loss this rank backpropagates: its anchors against every rank's reference rows.

    With equal per-device batches, DDP's averaged gradient of this value equals the
    single-process gradient on the concatenated batch (see the module docstring for other cases).

    A symmetric loss averages two directions, each a softmax over the other side (anchors pick
    among refs, refs pick among anchors). The second direction needs every rank's anchors, so
    across devices it runs as its own call: this rank's refs against every rank's anchors, with
    the loss made one-way (``loss.one_way()``).

    Args:
        loss: any loss of ``textdml.losses``.
        embeddings, labels, ref_embeddings, ref_labels, indices, miner: as :func:`gather_for_loss`.
        symmetric, accepts_indices: what the loss declares (``LossNeeds``); the task passes them,
            a direct call leaves them None and they are read from ``loss.needs``.
    """
    if world_size() == 1:
        return loss(**gather_for_loss(embeddings, labels, ref_embeddings, ref_labels, indices=indices, miner=miner))
    name = type(loss).__name__
    symmetric = loss.needs.symmetric if symmetric is None else symmetric
    accepts_indices = loss.needs.accepts_indices if accepts_indices is None else accepts_indices
    if ref_embeddings is None and not accepts_indices:
        raise ValueError(
            f"{name} compares labelled rows without a reference set: across devices each anchor also sits in "
            f"the gathered set, which only tuples (indices) can exclude, and {name} does not take tuples. "
            "Pass a reference set (another view of the rows) or compute this loss per device."
        )
    if not (symmetric and ref_embeddings is not None):
        return loss(**gather_for_loss(embeddings, labels, ref_embeddings, ref_labels, indices=indices, miner=miner))
    if indices is not None or miner is not None:
        raise ValueError(f"{name}(symmetric=True) does not take tuples across devices")
    labels, ref_labels = resolve_global_labels(embeddings, labels, ref_embeddings, ref_labels)
    one_way = loss.one_way()  # shares parameters; computes anchors -> refs only
    forward = one_way(**gather_for_loss(embeddings, labels, ref_embeddings, ref_labels))
    backward = one_way(**gather_for_loss(ref_embeddings, ref_labels, embeddings, labels))
    return (forward + backward) / 2
