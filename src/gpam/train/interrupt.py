"""Ctrl-C and ``kill`` during training: checkpoint the step in progress, then stop.

:class:`SignalFlag` turns SIGINT / SIGTERM into a flag the training loop reads once per
optimiser step (under DDP the flag of every rank is summed with the step's other values, so all
ranks stop after the same step). The loop then writes a checkpoint through the usual atomic
checkpoint code and raises :class:`TrainingInterrupted`, a ``KeyboardInterrupt`` whose
``exit_code`` is 130 for SIGINT and 143 for SIGTERM (128 + the signal number, as a shell
reports a process killed by it). A second signal while the checkpoint is written stops at once
(the previous checkpoint stays intact: every file is replaced atomically).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal after checkpointing ``step`` into ``checkpoint``."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint
        name = signal.Signals(self.signum).name
        where = (
            f"checkpoint {checkpoint} written; a resumed run continues from it"
            if checkpoint
            else "no checkpoint written"
        )
        super().__init__(f"interrupted by {name} after step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class SignalFlag:
    """While installed, SIGINT and SIGTERM set :attr:`signum` instead of stopping the process;
    a second one raises ``KeyboardInterrupt`` at once. :meth:`restore` puts the previous
    handlers back. Disabled, or outside the main thread (where Python cannot set handlers), it
    does nothing and :attr:`signum` stays 0. Also a context manager."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.signum = enabled, 0
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def install(self) -> SignalFlag:
        """Catch the signals from now on."""
        self.signum = 0
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        """Put the handlers back that were there before :meth:`install`."""
        for s, handler in self._old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._old.clear()

    def __enter__(self) -> SignalFlag:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()
