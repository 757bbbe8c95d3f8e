"""Dynamic batching on the GPU lane: which queued units share one call, and how many.

Units of one model whose engine gives them equal batch keys (same task and options) are decoded
together, up to a limit: the policy's cap, lowered so one batch takes at most `batch_latency_s`
by the measured time per unit (an interactive unit waits for at most one batch), and halved
after a GPU out-of-memory. A batch that fails for any other reason is split: each unit runs
alone once, so a bad unit fails only itself.

Both lowered limits recover, or one out-of-memory (another process's peak, a long window) or
one slow batch (a busy device) would leave the GPU decoding one window at a time until a
restart: the halved cap doubles again after `recover_after` calls in a row that filled it
without error, and a lone unit's time bounds the estimate (batching never costs a unit more
than running alone), while `recover_after` lone calls in a row held to one unit by the estimate
let the next call take two units to measure a batch again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..engines.base import BatchEngine, Engine, Lane, is_gpu_error
from .policy import ModelPolicy
from .pool import Instance
from .queue import Unit

log = logging.getLogger(__name__)


class Batcher:
    recover_after = 4  # calls without error before a lowered limit is raised again

    def __init__(self, engines: dict[str, Engine], policies: dict[str, ModelPolicy]) -> None:
        self.engines = engines
        self.policies = policies
        self.oom_cap: dict[str, int] = {}  # batch limit after a GPU out-of-memory
        self.full_runs: dict[str, int] = {}  # calls in a row that filled the lowered cap
        # time per unit, from batched calls; a lone call (the same batched path with its own
        # VAD pass) only lowers it: in a batch a unit never costs more than alone
        self.per_unit: dict[str, float] = {}
        self.lone_runs: dict[str, int] = {}  # lone calls in a row the estimate held to one

    def can_batch(self, model: str) -> bool:
        return isinstance(self.engines[model], BatchEngine) and self.policies[model].max_batch > 1

    def batches(self, inst: Instance) -> bool:
        """Whether this instance's calls go through the engine's batched path."""
        return inst.lane == Lane.gpu and isinstance(inst.engine, BatchEngine)

    def measured(self, model: str, run_s: float, n: int) -> None:
        """A batched-path call of `n` units took `run_s` (load not included)."""
        if n > 1:
            self.per_unit[model] = run_s / n
            self.lone_runs.pop(model, None)
            return
        per_unit_s = self.per_unit.get(model)
        if per_unit_s is None:
            return
        self.per_unit[model] = min(per_unit_s, run_s)
        if self._latency_limit(model) <= 1:
            self.lone_runs[model] = self.lone_runs.get(model, 0) + 1

    def succeeded(self, model: str, run_s: float, n: int, timed: bool) -> None:
        """A batched-path call of `n` units succeeded (`timed`: no load in its `run_s`)."""
        if timed:
            self.measured(model, run_s, n)
        cap = self.oom_cap.get(model)
        if cap is None or n < cap:
            return
        self.full_runs[model] = runs = self.full_runs.get(model, 0) + 1
        if runs >= self.recover_after:
            self.full_runs.pop(model)
            if cap * 2 >= self.policies[model].max_batch:
                del self.oom_cap[model]
            else:
                self.oom_cap[model] = cap * 2
            log.info("batch limit raised after %d calls without error", runs,
                     extra={"model": model, "cap": self.oom_cap.get(model)})  # fmt: skip

    def _latency_limit(self, model: str) -> int:
        per_unit_s = self.per_unit.get(model)
        if not per_unit_s:
            return self.policies[model].max_batch
        return int(self.policies[model].batch_latency_s / per_unit_s)

    def limit(self, model: str) -> int:
        policy = self.policies[model]
        cap = min(policy.max_batch, self.oom_cap.get(model, policy.max_batch))
        limit = min(cap, self._latency_limit(model))
        if self.lone_runs.get(model, 0) >= self.recover_after:
            limit = max(limit, min(2, cap))  # one call of two measures a batch again
        return max(1, limit)

    def companions(self, unit: Unit, queued: Iterable[Unit], limit: int) -> list[Unit]:
        """Queued units (in priority order) that can share `unit`'s call, up to `limit` - 1."""
        engine = self.engines[unit.model]
        if unit.solo or limit <= 1 or not isinstance(engine, BatchEngine):
            return []
        key = engine.batch_key(unit.payload)
        if key is None:
            return []
        out: list[Unit] = []
        for other in queued:
            if len(out) >= limit - 1:
                break
            if (
                other is not unit
                and other.model == unit.model
                and not other.force_cpu
                and not other.solo
                and engine.batch_key(other.payload) == key
            ):
                out.append(other)
        return out

    def failed(self, units: list[Unit], exc: Exception) -> None:
        """A batch failed: after a CUDA error (out of memory) the model's limit is halved and
        the units run again in smaller batches (down to one, which a further GPU error sends to
        the CPU); after any other error each unit runs alone. Nothing is lost."""
        model = units[0].model
        self.lone_runs.pop(model, None)
        if is_gpu_error(exc):
            self.full_runs.pop(model, None)
            self.oom_cap[model] = max(1, len(units) // 2)
            log.warning(
                "GPU error in a batch of %d; retrying in batches of %d",
                len(units),
                self.oom_cap[model],
                extra={"model": model, "error": str(exc)[:200]},
            )
        else:
            for unit in units:
                unit.solo = True
