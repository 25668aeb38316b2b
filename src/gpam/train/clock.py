"""The training engine's clocks: :class:`BudgetClock` (training time only) with no host sync.

The budget is read from a host clock every step (``wall`` = ``time.perf_counter``, ``cpu`` =
this process's CPU time, ``steps`` = one unit per step); reading it does not wait for the device.
Step times for the summary's ``step_time_ms`` come from ``perf_counter`` on the CPU and from CUDA
events on CUDA, read in batches (:meth:`BudgetClock.collect`) at the steps where the loop reads
the device anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
MAX_PENDING_EVENTS = 1000  # CUDA event pairs kept before :meth:`BudgetClock.stop` collects them


class BudgetClock:
    """Training time only: :meth:`start` before an optimiser step, :meth:`stop` after it.

    ``elapsed`` is the budget used so far (host clock, no device sync); ``step_seconds`` the
    time of each step of this process once :meth:`collect` has run (on CUDA the device time
    between two events, on other devices the host's wall time).
    """

    def __init__(self, kind: str, elapsed: float, device: torch.device) -> None:
        self.kind, self.elapsed, self.device = kind, float(elapsed), device
        self._t0 = 0.0
        self._w0 = 0.0
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._start_event: torch.cuda.Event | None = None
        self.step_seconds: list[float] = []

    def _event(self) -> torch.cuda.Event:
        e = torch.cuda.Event(enable_timing=True)
        e.record(torch.cuda.current_stream(self.device))
        return e

    def start(self) -> None:
        self._w0 = time.perf_counter()
        self._t0 = CLOCKS[self.kind]() if self.kind != "steps" else 0.0
        if self.device.type == "cuda":
            self._start_event = self._event()

    def stop(self) -> None:
        if self.device.type == "cuda":
            self._events.append((self._start_event, self._event()))
            if len(self._events) >= MAX_PENDING_EVENTS:
                self.collect()
        else:
            self.step_seconds.append(time.perf_counter() - self._w0)
        self.elapsed += 1.0 if self.kind == "steps" else CLOCKS[self.kind]() - self._t0

    def collect(self) -> None:
        """Move the CUDA event timings of the steps so far into :attr:`step_seconds` (waits
        for the last step to finish on the device; nothing to do on other devices)."""
        if self._events:
            self._events[-1][1].synchronize()
            self.step_seconds += [a.elapsed_time(b) / 1000.0 for a, b in self._events]
            self._events.clear()
