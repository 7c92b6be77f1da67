"""The devices of a run: its Accelerator, checks of how it was launched, and the GradCache plan."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import DataLoaderConfiguration
from datasets import IterableDataset

from textdml.config import RunConfig, TrainingConfig
from textdml.models.embedder import Embedder
from textdml.models.saving import is_image_text

logger = logging.getLogger(__name__)


def resolve_mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def create_accelerator(t: TrainingConfig) -> Accelerator:
    """The Accelerator of a run, logging to ``training.report_to``. Every process reads its own
    batches (no dispatching): a batch holds tokenised blocks, not one tensor, and Accelerate's
    dispatching (its default for streaming data) can only slice tensors."""
    from accelerate.utils import ProjectConfiguration

    from textdml.training import trackers

    output_dir = Path(t.output_dir)
    report_to = trackers.resolve_trackers(t.report_to)
    return Accelerator(mixed_precision=resolve_mixed_precision(t.mixed_precision),
                       gradient_accumulation_steps=t.gradient_accumulation_steps,
                       dataloader_config=DataLoaderConfiguration(dispatch_batches=False),
                       log_with=report_to or None,
                       project_config=ProjectConfiguration(project_dir=str(output_dir),
                                                           logging_dir=str(trackers.tracker_logging_dir(output_dir))))


def check_dispatch(accelerator: Accelerator, dataset: Any) -> None:
    """A given Accelerator that would dispatch streaming batches from the main process: made to
    let each process read its own (None = Accelerate's default), or refused when asked for."""
    loader_config = accelerator.dataloader_config
    if loader_config.dispatch_batches is None:
        loader_config.dispatch_batches = False
    elif loader_config.dispatch_batches and isinstance(dataset, IterableDataset):
        raise ValueError("the Accelerator has dispatch_batches=True, which cannot split textdml's tokenised batches: "
                         "create it with DataLoaderConfiguration(dispatch_batches=False)")


def check_process_group(accelerator: Accelerator) -> None:
    from textdml import distributed

    if distributed.world_size() != accelerator.num_processes:
        raise RuntimeError(
            f"torch.distributed runs {distributed.world_size()} processes but Accelerate trains with "
            f"{accelerator.num_processes}: on CPU, launch with ACCELERATE_USE_CPU=1 (e.g. "
            "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m textdml train ...)"
        )


def is_sharded(accelerator: Accelerator) -> bool:
    """FSDP and DeepSpeed hold pieces of the weights on each process."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def plan_grad_cache(config: RunConfig, embedder: Embedder, accelerator: Accelerator) -> int:
    """The GradCache mini-batch: from the config, or the largest that fits this device's memory."""
    t = config.training
    if t.mini_batch_size:
        return t.mini_batch_size
    if is_image_text(embedder):
        raise ValueError("training.grad_cache with a dual encoder needs training.mini_batch_size "
                         "(the memory planner models text encoders only)")
    from textdml.training.memory_planner import plan_mini_batch

    device = accelerator.device
    if device.type == "cuda":
        memory = torch.cuda.mem_get_info(device)[1]
    else:
        import psutil

        memory = psutil.virtual_memory().available // 2
    plan = plan_mini_batch(embedder, embedder.max_seq_length, memory, device=device,
                           activation_dtype=torch.bfloat16 if accelerator.mixed_precision == "bf16" else None,
                           max_mini_batch=t.batch_size)
    logger.info("GradCache %s; effective in-batch negatives per anchor: %d", plan.summary,
                plan.effective_negatives(t.batch_size, accelerator.num_processes))
    return plan.mini_batch_size
