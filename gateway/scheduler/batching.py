"""Dynamic batching on the GPU lane: which queued units share one call, and how many.

Units of one model whose engine gives them equal batch keys (same task and options) are decoded
together, up to a limit: the policy's cap, lowered so one batch takes at most `batch_latency_s`
by the measured time per unit (an interactive unit waits for at most one batch), and halved
after a GPU out-of-memory. A batch that fails for any other reason is split: each unit runs
alone once, so a bad unit fails only itself.
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
    def __init__(self, engines: dict[str, Engine], policies: dict[str, ModelPolicy]) -> None:
        self.engines = engines
        self.policies = policies
        self.oom_cap: dict[str, int] = {}  # batch limit after a GPU out-of-memory
        # time per unit measured in batched calls only: a lone unit decodes sequentially (with
        # its own VAD and temperature fallback) and costs several times a batched one
        self.per_unit: dict[str, float] = {}

    def can_batch(self, model: str) -> bool:
        return isinstance(self.engines[model], BatchEngine) and self.policies[model].max_batch > 1

    def batches(self, inst: Instance) -> bool:
        """Whether this instance's calls go through the engine's batched path."""
        return inst.lane == Lane.gpu and isinstance(inst.engine, BatchEngine)

    def measured(self, model: str, run_s: float, n: int) -> None:
        if n > 1:
            self.per_unit[model] = run_s / n

    def limit(self, model: str) -> int:
        policy = self.policies[model]
        limit = min(policy.max_batch, self.oom_cap.get(model, policy.max_batch))
        per_unit_s = self.per_unit.get(model)
        if per_unit_s:
            limit = min(limit, int(policy.batch_latency_s / per_unit_s))
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
        if is_gpu_error(exc):
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
