"""How many rows fit in one forward + backward: the mini-batch size for GradCache.

The memory of a training step is a fixed part (weights, gradients, optimiser state) plus a part
that grows linearly with the rows of a mini-batch (activations kept for backward). On a CUDA
device the planner measures both: a forward + backward at two small mini-batch sizes, peak memory
from ``torch.cuda.max_memory_allocated``, a line through the two points. Elsewhere it estimates
them from the model configuration (hidden size, layers, heads, sequence length), counting the
activations a BERT-style layer keeps for backward (as Korthikanti et al., 2022, "Reducing
Activation Recomputation in Large Transformer Models", count them).

The per-device batch (in-batch negatives) is then free: GradCache
(``textdml.training.grad_cache``) runs it in mini-batches of the planned size.

Example:
    >>> from transformers import BertConfig, BertModel
    >>> model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                              num_attention_heads=2, intermediate_size=64))
    >>> plan = plan_mini_batch(model, seq_lengths=64, device_memory_bytes=2**30)
    >>> plan.mini_batch_size >= 1, plan.method
    (True, 'estimated')
    >>> plan.effective_negatives(per_device_batch=256, world_size=8)
    2047
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

ForwardFn = Callable[[nn.Module, int, int, torch.device], torch.Tensor]

GiB, MiB = 2**30, 2**20


@dataclass(frozen=True)
class MiniBatchPlan:
    """The planned mini-batch size and the memory model behind it.

    Attributes:
        mini_batch_size: rows per forward + backward (at least 1).
        seq_length: the padded sequence length it was planned for.
        bytes_per_row: memory that each row of a mini-batch adds.
        fixed_bytes: memory independent of the mini-batch (weights, gradients, optimiser state).
        device_memory_bytes: the device memory planned against.
        headroom: the fraction of ``device_memory_bytes`` left free (allocator, loss, buffers).
        method: ``measured`` (CUDA peaks) or ``estimated`` (from the model configuration).
    """

    mini_batch_size: int
    seq_length: int
    bytes_per_row: int
    fixed_bytes: int
    device_memory_bytes: int
    headroom: float
    method: Literal["measured", "estimated"]

    def effective_negatives(self, per_device_batch: int, world_size: int = 1, refs_per_anchor: int = 1) -> int:
        """The negatives each anchor is scored against when references are gathered from every device.

        Args:
            per_device_batch: anchors per device (with GradCache, any multiple of the mini-batch).
            world_size: number of devices.
            refs_per_anchor: reference rows per anchor (1 positive + hard negatives).
        """
        return per_device_batch * world_size * refs_per_anchor - 1

    def mini_batches(self, per_device_batch: int) -> int:
        """How many mini-batches GradCache splits a per-device batch into (1: no caching needed)."""
        return max(1, math.ceil(per_device_batch / self.mini_batch_size))

    @property
    def summary(self) -> str:
        source = "measured on the device" if self.method == "measured" else "estimated from the model config"
        usable = self.device_memory_bytes * (1 - self.headroom)
        return (
            f"mini-batch of {self.mini_batch_size} rows of {self.seq_length} tokens: "
            f"{self.bytes_per_row / MiB:.1f} MiB per row on top of {self.fixed_bytes / GiB:.2f} GiB fixed "
            f"(weights, gradients, optimiser state), {source}; fits {usable / GiB:.2f} GiB "
            f"({1 - self.headroom:.0%} of {self.device_memory_bytes / GiB:.2f} GiB)"
        )


def plan_mini_batch(
    model: nn.Module,
    seq_lengths: int | Sequence[int],
    device_memory_bytes: int | None = None,
    *,
    device: torch.device | str | None = None,
    headroom: float = 0.1,
    optimizer_bytes_per_param: float = 8.0,
    activation_dtype: torch.dtype | None = None,
    probe_sizes: tuple[int, int] = (2, 4),
    max_mini_batch: int | None = None,
    forward_fn: ForwardFn | None = None,
) -> MiniBatchPlan:
    """Plan the largest mini-batch whose forward + backward fits in device memory.

    Args:
        model: the embedder (``Embedder``, a Hugging Face model, or anything ``forward_fn`` runs).
        seq_lengths: the padded length of the mini-batches, or the lengths of each role (the
            longest is planned for).
        device_memory_bytes: the memory to plan against (default: the CUDA device's total).
        device: where the model trains (default: where its parameters are).
        headroom: the fraction of memory kept free for the allocator, the loss and buffers.
        optimizer_bytes_per_param: optimiser state per trainable parameter, not yet allocated
            (8 for AdamW in float32; 0 if the optimiser state already lives on the device).
        activation_dtype: the dtype of activations (``torch.bfloat16`` under autocast; default:
            the parameters' dtype). Only used by the estimate.
        probe_sizes: the two mini-batch sizes measured on CUDA.
        max_mini_batch: an upper bound on the result.
        forward_fn: ``(model, batch_size, seq_length, device) -> output`` for models the default
            (random token ids into ``model(features)`` or ``model(**features)``) cannot run.
    """
    seq_length = max(seq_lengths) if isinstance(seq_lengths, Sequence) else int(seq_lengths)
    if seq_length < 1:
        raise ValueError(f"seq_lengths must be >= 1, got {seq_lengths}")
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be in [0, 1), got {headroom}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device_memory_bytes is None:
        if device.type != "cuda":
            raise ValueError("device_memory_bytes is needed for a device other than CUDA")
        device_memory_bytes = torch.cuda.get_device_properties(device).total_memory
    optimizer_bytes = int(optimizer_bytes_per_param * trainable_parameters(model))
    if device.type == "cuda":
        fixed, per_row = measure_memory(model, seq_length, device, probe_sizes, forward_fn or default_forward)
        method: Literal["measured", "estimated"] = "measured"
    else:
        fixed, per_row = estimate_memory(model, seq_length, activation_dtype, device)
        method = "estimated"
    fixed += optimizer_bytes
    size = fit_mini_batch(fixed, per_row, device_memory_bytes * (1 - headroom))
    if max_mini_batch is not None:
        size = min(size, max_mini_batch)
    return MiniBatchPlan(size, seq_length, int(per_row), int(fixed), int(device_memory_bytes), headroom, method)


def fit_mini_batch(fixed_bytes: float, bytes_per_row: float, usable_bytes: float) -> int:
    """The largest row count with ``fixed + rows * per_row <= usable``, and never below 1."""
    return max(1, int((usable_bytes - fixed_bytes) // max(bytes_per_row, 1.0)))


def line_through(sizes: tuple[int, int], peaks: tuple[int, int]) -> tuple[float, float]:
    """``(fixed, per_row)`` of the line through two (mini-batch size, peak bytes) points."""
    (small, large), (small_peak, large_peak) = sizes, peaks
    if large <= small:
        raise ValueError(f"probe sizes must grow, got {sizes}")
    # Allocator rounding can make the two peaks almost equal; a row never costs nothing.
    per_row = max((large_peak - small_peak) / (large - small), 1.0)
    return max(small_peak - per_row * small, 0.0), per_row


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_config(model: nn.Module) -> Any:
    """The Hugging Face config of a model or of the transformer inside an embedder."""
    for candidate in (model, getattr(model, "transformer", None), getattr(model, "bert", None)):
        config = getattr(candidate, "config", None)
        if config is not None and hasattr(config, "hidden_size"):
            return config
    raise ValueError(f"{type(model).__name__} has no Hugging Face config to estimate from; "
                     "plan on a CUDA device (measured) instead")


def default_forward(model: nn.Module, batch_size: int, seq_length: int, device: torch.device) -> torch.Tensor:
    """Random token ids through the model; returns what backward starts from."""
    vocab_size = getattr(model_config(model), "vocab_size", 1000)
    generator = torch.Generator(device=device).manual_seed(0)
    input_ids = torch.randint(1, vocab_size, (batch_size, seq_length), device=device, generator=generator)
    features = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    from transformers import PreTrainedModel

    output = model(**features) if isinstance(model, PreTrainedModel) else model(features)
    if isinstance(output, torch.Tensor):
        return output
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]


def measure_memory(
    model: nn.Module, seq_length: int, device: torch.device, probe_sizes: tuple[int, int], forward_fn: ForwardFn
) -> tuple[float, float]:
    """``(fixed, per_row)`` bytes from CUDA peak memory at two mini-batch sizes."""
    was_training = model.training
    model.train()  # dropout masks are part of the activations
    try:
        with torch.random.fork_rng(devices=[device]):  # leave the training RNG untouched
            probe_peak(model, probe_sizes[0], seq_length, device, forward_fn)  # warm-up: workspaces, kernels
            peaks = tuple(probe_peak(model, size, seq_length, device, forward_fn) for size in probe_sizes)
    finally:
        model.train(was_training)
    return line_through(probe_sizes, peaks)  # type: ignore[arg-type]


def probe_peak(model: nn.Module, batch_size: int, seq_length: int, device: torch.device, forward_fn: ForwardFn) -> int:
    """Peak bytes of one forward + backward; leaves ``.grad`` unset."""
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    forward_fn(model, batch_size, seq_length, device).float().sum().backward()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    model.zero_grad(set_to_none=True)
    return peak


# Attention implementations whose kernels recompute the (s, s) probabilities in backward instead
# of storing them (PyTorch SDPA's flash / memory-efficient kernels, FlashAttention).
FUSED_ATTENTION = frozenset({"sdpa", "flash_attention_2", "flash_attention_3"})


def estimate_memory(model: nn.Module, seq_length: int, activation_dtype: torch.dtype | None,
                    device: torch.device | str | None = None) -> tuple[float, float]:
    """``(fixed, per_row)`` bytes from the configuration of a BERT-style encoder.

    Per layer and row, with ``s`` tokens, hidden size ``h``, feed-forward size ``f``, ``a`` heads,
    ``e`` bytes per activation, ``p`` per parameter and ``m`` per dropout mask (1 on CUDA, ``e`` on
    CPU), backward keeps ``6*s*h*e + 2*s*f*e + 2*s*h*p + 2*s*h*m`` bytes: the inputs of the four
    projections, queries, keys and values, the feed-forward activations, the inputs of the two
    layer norms (in the parameters' dtype: autocast runs them in float32) and two dropout masks;
    plus, where the
    attention is not fused, the ``a*s^2`` probabilities (``e`` bytes), with attention dropout also
    their mask and the dropped copy (``a*s^2*(m + e)``). A fused kernel (``sdpa`` on CUDA, or on
    CPU without attention dropout; FlashAttention) keeps only ``a*s`` float32 log-sum-exps and
    recomputes the rest. The embeddings and the pooling add about ``4*s*h*p``.

    Args:
        model: a Hugging Face encoder, or an embedder around one.
        seq_length: the padded length of each row.
        activation_dtype: the dtype of activations (default: the parameters' dtype).
        device: where the model trains (default: where its parameters are).
    """
    config = model_config(model)
    params = list(model.parameters())
    device = torch.device(device) if device is not None else params[0].device
    h = config.hidden_size
    f = getattr(config, "intermediate_size", None) or 4 * h
    layers = getattr(config, "num_hidden_layers", 1)
    e = torch.empty((), dtype=activation_dtype or params[0].dtype).element_size()
    m = 1 if device.type == "cuda" else e  # CUDA keeps dropout masks as bool, CPU in the activation dtype
    s = seq_length
    # Under autocast the layer norms and the embeddings still run in the parameters' dtype.
    p = params[0].element_size()
    per_layer = (6 * s * h + 2 * s * f) * e + 2 * s * h * p + 2 * s * h * m + attention_bytes(config, s, e, m, device)
    embeddings_and_pooling = 4 * s * h * p
    if is_gradient_checkpointing(model):
        # Only each layer's input is kept; one layer at a time is recomputed in full.
        per_row = layers * s * h * e + per_layer + embeddings_and_pooling
    else:
        per_row = layers * per_layer + embeddings_and_pooling
    weights = sum(p.numel() * p.element_size() for p in params)
    gradients = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return float(weights + gradients), float(per_row)


def attention_bytes(config: Any, s: int, e: int, m: int, device: torch.device) -> int:
    """What one layer's attention keeps per row beyond its queries, keys and values (see above)."""
    a = getattr(config, "num_attention_heads", 1)
    dropout = float(getattr(config, "attention_probs_dropout_prob", getattr(config, "attention_dropout", 0.1)) or 0.0)
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation in FUSED_ATTENTION and (device.type == "cuda" or dropout == 0.0):
        return a * s * 4  # the log-sum-exp of each query row, in float32
    return a * s * s * (e + ((m + e) if dropout > 0 else 0))


def is_gradient_checkpointing(model: nn.Module) -> bool:
    """Whether a Hugging Face layer stack recomputes its activations in backward."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
