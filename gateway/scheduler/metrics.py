"""Prometheus metrics of the scheduler. GPU gauges use DCGM's names where they mean the same thing
(`DCGM_FI_DEV_FB_USED` etc., in MiB), so dashboards built for dcgm-exporter work unchanged."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .gpu import GpuInfo

WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
RUN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "gateway_queue_depth",
            "Work units waiting, per priority level and engine.",
            ["level", "engine"],
            registry=registry,
        )
        self.queue_wait = Histogram(
            "gateway_queue_wait_seconds",
            "Time a work unit waited in the queue.",
            ["level", "engine"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.run_time = Histogram(
            "gateway_unit_run_seconds",
            "Time a work unit ran (load included on first use; a unit decoded in a batch counts "
            "its share of the call).",
            ["engine", "lane"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.units = Counter(
            "gateway_units_total",
            "Work units finished, by lane and outcome.",
            ["engine", "lane", "outcome"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "gateway_batch_size",
            "Units decoded together in one GPU call (dynamic batching).",
            ["engine"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.fallbacks = Counter(
            "gateway_fallbacks_total",
            "Units placed on the CPU instead of the GPU, by reason.",
            ["engine", "reason"],
            registry=registry,
        )
        self.rejections = Counter(
            "gateway_rejections_total",
            "Requests refused by a queue policy.",
            ["level", "reason"],
            registry=registry,
        )
        self.cancelled = Counter(
            "gateway_requests_cancelled_total",
            "Requests whose caller went away (client disconnect) while their work was queued; "
            "the queued unit was taken back.",
            ["level", "engine"],
            registry=registry,
        )
        self.partials = Counter(
            "gateway_partial_decodes_total",
            "Live transcription's partial decodes (speculative work), by outcome: run; replaced "
            "(a newer one came before a slot did); skipped (asked for while the turn's previous "
            "one still ran); stale (dropped when its turn ended or its session left).",
            ["engine", "outcome"],
            registry=registry,
        )
        self.loads = Counter(
            "gateway_model_loads_total", "Model loads.", ["engine", "lane"], registry=registry
        )
        self.unloads = Counter(
            "gateway_model_unloads_total",
            "Model unloads.",
            ["engine", "lane", "reason"],
            registry=registry,
        )
        self.gpu_load_failures = Counter(
            "gateway_gpu_load_failures_total",
            "GPU loads that failed (the model then runs on the CPU for gpu_retry_cooldown_s).",
            ["engine"],
            registry=registry,
        )
        self.gpu_load_retries = Counter(
            "gateway_gpu_load_retries_total",
            "Times a model was tried on the GPU again after a failed load.",
            ["engine"],
            registry=registry,
        )
        self.gpu_other_mib = Gauge(
            "gateway_gpu_other_processes_memory_mib",
            "GPU memory held by other processes on this replica's device (MiB), read every "
            "gpu_pressure_check_s.",
            registry=registry,
        )
        self.gpu_pressure = Gauge(
            "gateway_gpu_pressure",
            "1 while other processes' memory keeps new loads off the GPU (gpu_pressure).",
            registry=registry,
        )
        self.gpu_pressure_events = Counter(
            "gateway_gpu_pressure_events_total",
            "Times other processes pushed the device's free memory under the reserve.",
            registry=registry,
        )
        self.slots = Gauge("gateway_lane_slots", "Slots per lane.", ["lane"], registry=registry)
        self.busy = Gauge(
            "gateway_lane_busy_slots", "Busy slots per lane.", ["lane"], registry=registry
        )
        self.rtf = Histogram(
            "gateway_real_time_factor",
            "Compute seconds per second of audio, per engine and lane (a batched unit's share of "
            "the call).",
            ["engine", "lane"],
            buckets=RTF_BUCKETS,
            registry=registry,
        )


class GpuCollector(Collector):
    """Reads NVML at scrape time, so the numbers are never stale."""

    def __init__(self, read: Callable[[], list[GpuInfo]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily(
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (MiB).",
            labels=["gpu", "UUID", "modelName"],
        )
        free = GaugeMetricFamily(
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (MiB).",
            labels=["gpu", "UUID", "modelName"],
        )
        util = GaugeMetricFamily(
            "DCGM_FI_DEV_GPU_UTIL", "GPU utilization (%).", labels=["gpu", "UUID", "modelName"]
        )
        mine = GaugeMetricFamily(
            "gateway_gpu_process_memory_mib",
            "GPU memory used by this process (MiB).",
            labels=["gpu"],
        )
        for d in self._read():
            labels = [str(d.index), d.uuid, d.name]
            used.add_metric(labels, d.used_mib)
            free.add_metric(labels, d.free_mib)
            if d.utilization_pct is not None:
                util.add_metric(labels, d.utilization_pct)
            if d.process_used_mib is not None:
                mine.add_metric([str(d.index)], d.process_used_mib)
        yield from (used, free, util, mine)
