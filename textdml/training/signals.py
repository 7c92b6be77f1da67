"""SIGINT (Ctrl-C) and SIGTERM (what schedulers and containers send) stop training at a step boundary.

A signal handled where it lands (Python raises ``KeyboardInterrupt`` between any two bytecodes)
can cut a step in half: weights already updated, the step counter not yet. So the handler only
sets a flag; the loop checks it after each optimiser step, saves a checkpoint that matches the
weights, and raises ``TrainingInterrupted``. A second signal stops at once, as the first would
have without this handler (no checkpoint is then saved).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import torch

logger = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving ``checkpoint`` (None when no checkpoint could be saved)."""

    def __init__(self, signum: int, checkpoint: Any = None, message: str = ""):
        super().__init__(message)
        self.signum = signum
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return self.args[0] if self.args and self.args[0] else signal.Signals(self.signum).name


class StopRequest:
    """Context manager: while active, SIGINT / SIGTERM set ``signum`` instead of stopping the process.

    Handlers can only be installed from the main thread; elsewhere this does nothing (and the
    signals keep their usual effect).

    Example:
        >>> import os, signal
        >>> with StopRequest() as stop:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     stop.signum == signal.SIGTERM
        True
    """

    def __init__(self, signals: tuple[int, ...] = HANDLED):
        self.signals = signals
        self.signum: int | None = None
        self.forced = False  # a second signal: stop at once, no checkpoint
        self.previous: dict[int, Any] = {}
        # What the first signal does, as the warning tells it (the loop changes it for the final save).
        self.notice = "stopping after this step with a checkpoint"

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: stop now, the way the signal would have
            self.forced = True
            previous = self.previous.get(signum)
            self.restore()
            if previous is signal.SIG_IGN or previous is None:
                # Inherited as ignored (a background job of a script): re-raising it would lose it.
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signum = signum
        logger.warning("%s received: %s (send it again to stop at once, without one)", signal.Signals(signum).name,
                       self.notice)

    def requested(self, accelerator: Any = None) -> int | None:
        """The signal to stop on, agreed by all processes (one that got it stops them all, at the same step)."""
        if accelerator is None or accelerator.num_processes == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=accelerator.device)
        agreed = int(accelerator.gather(flag).max().item())
        return agreed or None
