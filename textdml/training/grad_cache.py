"""GradCache: a large contrastive batch on a small device, with the exact full-batch gradient.

In-batch-negative losses want large batches, but activation memory grows with the batch. GradCache
(Gao et al., 2021) splits the encoder work from the loss:

1. embed every mini-batch without a graph (cheap in memory), recording the RNG state of each;
2. compute the full-batch loss on those embeddings as leaves, backward to get one gradient per
   embedding (the loss is the only part that sees the whole batch);
3. re-embed each mini-batch with a graph, under its recorded RNG state so that dropout draws
   the same masks, and backpropagate its cached embedding gradient into the model.

Peak activation memory is that of one mini-batch; the price is a second forward pass.

Gradient semantics: gradients are *added* to ``.grad`` exactly as ``loss.backward()`` on the
full batch would add them, so the usual accumulation rules apply. Calling :func:`cached_backward`
k times before ``optimizer.step()`` sums k full-batch gradients; divide the loss by k inside
``loss_fn`` for their mean. The loss's own parameters (a learnable temperature, proxies) get
their gradient in step 2, the model's in step 3.

Across devices: ``loss_fn`` may gather embeddings from every rank (``textdml.distributed``);
step 2 then runs the collective once and the cached gradients already hold every rank's
contribution, while step 3 is local. Under DDP pass ``no_sync`` so that the parameter
gradients are all-reduced once, with the last mini-batch.

Mixed precision: run ``embed_fn`` under autocast yourself; pass ``backward`` when the loss needs
scaling (``accelerator.backward`` or ``lambda loss: scaler.scale(loss).backward()``): the cached
gradients then carry the scale into the model, as a plain backward would.

Example:
    >>> import torch
    >>> encoder = torch.nn.Linear(4, 3)
    >>> anchors, positives = torch.randn(5, 4), torch.randn(5, 4)
    >>> chunks = [list(anchors.split(2)), list(positives.split(2))]  # roles x mini-batches
    >>> loss_fn = lambda embeddings: (embeddings[0] * embeddings[1]).sum()
    >>> loss = cached_backward(encoder, chunks, loss_fn)
    >>> encoder.weight.grad.shape
    torch.Size([3, 4])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

EmbedFn = Callable[[Any], torch.Tensor]
LossFn = Callable[[list[torch.Tensor]], torch.Tensor]


def _tensors_in(inputs: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) dict, list or tuple of inputs."""
    if isinstance(inputs, torch.Tensor):
        yield inputs
    elif isinstance(inputs, Mapping):
        for value in inputs.values():
            yield from _tensors_in(value)
    elif isinstance(inputs, (list, tuple)):
        for value in inputs:
            yield from _tensors_in(value)


@dataclass(frozen=True)
class RngState:
    """The CPU RNG state and the states of the CUDA devices a mini-batch runs on."""

    cpu: torch.Tensor
    cuda: dict[int, torch.Tensor]

    @classmethod
    def capture(cls, inputs: Any = None) -> RngState:
        """Record the state before embedding ``inputs`` (as ``torch.utils.checkpoint`` does)."""
        devices = {t.get_device() for t in _tensors_in(inputs) if t.device.type == "cuda"}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            devices.add(torch.cuda.current_device())
        cuda = {device: torch.cuda.get_rng_state(device) for device in sorted(devices)}
        return cls(cpu=torch.get_rng_state(), cuda=cuda)

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run a block from this state, then put the global RNG back where it was."""
        with torch.random.fork_rng(devices=list(self.cuda)):
            torch.set_rng_state(self.cpu)
            for device, state in self.cuda.items():
                torch.cuda.set_rng_state(state, device)
            yield


def cached_backward(
    embed_fn: EmbedFn,
    chunks: Sequence[Sequence[Any]],
    loss_fn: LossFn,
    *,
    backward: Callable[[torch.Tensor], None] | None = None,
    no_sync: Callable[[], AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Backpropagate a full-batch loss through ``embed_fn`` one mini-batch at a time.

    Mini-batches are embedded in the order roles x chunks, so the RNG stream (dropout) is the one
    a plain loop embedding the same chunks in the same order would draw: gradients match that
    loop to float precision.

    Args:
        embed_fn: one mini-batch (e.g. tokenised features) -> embeddings ``(b, D)``.
        chunks: per role (anchors, positives, negatives, ...), the list of its mini-batches.
        loss_fn: one tensor per role (its mini-batches' embeddings concatenated, in order)
            -> the scalar loss. It may gather across devices.
        backward: how to backpropagate the loss (default ``loss.backward()``).
        no_sync: a context manager factory (``ddp_model.no_sync``, or
            ``functools.partial(accelerator.no_sync, model)``) entered for every mini-batch
            except the last, so that DDP all-reduces the gradients once.

    Returns:
        The loss, detached.
    """
    if not chunks or any(len(role) == 0 for role in chunks):
        raise ValueError("every role needs at least one mini-batch")
    run_backward = backward if backward is not None else torch.Tensor.backward
    if all(len(role) == 1 for role in chunks):
        # One mini-batch per role: the plain path uses the same memory and one forward less.
        loss = loss_fn([embed_fn(role[0]) for role in chunks])
        run_backward(loss)
        return loss.detach()

    states, embeddings = _embed_without_graph(embed_fn, chunks)
    leaves = [torch.cat(role).detach().requires_grad_() for role in embeddings]
    loss = loss_fn(leaves)
    run_backward(loss)

    last = (len(chunks) - 1, len(chunks[-1]) - 1)
    for r, role in enumerate(chunks):
        sizes = [len(e) for e in embeddings[r]]
        leaf = leaves[r]
        grads = (leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)).split(sizes)
        for c, chunk in enumerate(role):
            sync = nullcontext() if no_sync is None or (r, c) == last else no_sync()
            with sync, states[r][c].replay():
                torch.autograd.backward(embed_fn(chunk), grads[c])
    return loss.detach()


def _embed_without_graph(
    embed_fn: EmbedFn, chunks: Sequence[Sequence[Any]]
) -> tuple[list[list[RngState]], list[list[torch.Tensor]]]:
    """Step 1: every mini-batch's embeddings and the RNG state it started from."""
    states: list[list[RngState]] = []
    embeddings: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for role in chunks:
            states.append([])
            embeddings.append([])
            for chunk in role:
                states[-1].append(RngState.capture(chunk))
                embeddings[-1].append(embed_fn(chunk))
    return states, embeddings


def split_features(
    features: Mapping[str, torch.Tensor], mini_batch_size: int, trim_padding: bool = True
) -> list[dict[str, torch.Tensor]]:
    """Split a tokenised batch into mini-batches of ``mini_batch_size`` rows.

    Args:
        features: ``input_ids``, ``attention_mask``, ... each ``(B, L)``.
        mini_batch_size: rows per mini-batch (the last one may be smaller).
        trim_padding: drop the trailing columns that are padding in every row of a mini-batch
            (right padding; a left-padded batch is left as it is). This saves compute but
            changes the shape dropout draws from, so only compare runs that trim alike.
    """
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
    total = len(next(iter(features.values())))
    mini_batches = []
    for start in range(0, total, mini_batch_size):
        mini_batch = {name: value[start : start + mini_batch_size] for name, value in features.items()}
        mask = mini_batch.get("attention_mask")
        if trim_padding and mask is not None and mask.ndim == 2:
            used = mask.any(dim=0).nonzero()
            length = int(used.max()) + 1 if len(used) else 1
            mini_batch = {name: value[:, :length] if value.ndim == 2 and value.shape[1] == mask.shape[1] else value
                          for name, value in mini_batch.items()}
        mini_batches.append(mini_batch)
    return mini_batches
