"""Request counters, latency and batch-size histograms, rendered in the Prometheus text format.

Kept in-process and dependency-free: the server is one process, and ``/metrics`` is
scraped as plain text (``# TYPE``/``# HELP`` lines, cumulative ``_bucket{le=...}``
series, ``_sum`` and ``_count``).
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        lines = [f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {n}' for bound, n in zip(self.buckets, self.counts)]
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum{{{labels}}} {self.sum:.6f}" if labels else f"{name}_sum {self.sum:.6f}")
        lines.append(f"{name}_count{{{labels}}} {self.count}" if labels else f"{name}_count {self.count}")
        return lines


class Metrics:
    """What ``/metrics`` reports; updated from the event loop and the batch worker (hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.in_flight = 0

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, status)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS_S)).observe(seconds)

    def observe_batch(self, size: int, timings_ms: dict[str, float]) -> None:
        with self._lock:
            self.batch_size.observe(size)
            for stage, ms in timings_ms.items():
                self.stage_seconds[stage.removesuffix("_ms")] += ms / 1000.0

    def render(self, queue_depth: int, ready: bool) -> str:
        with self._lock:
            out = ["# HELP ret2vqa_requests_total HTTP requests by route, method and status code.",
                   "# TYPE ret2vqa_requests_total counter"]
            for (route, method, status), n in sorted(self.requests.items()):
                out.append(f'ret2vqa_requests_total{{route="{route}",method="{method}",status="{status}"}} {n}')
            out += ["# HELP ret2vqa_request_duration_seconds Request latency by route.",
                    "# TYPE ret2vqa_request_duration_seconds histogram"]
            for route, hist in sorted(self.latency.items()):
                out += hist.render("ret2vqa_request_duration_seconds", f'route="{route}"')
            out += ["# HELP ret2vqa_batch_size Requests per micro-batch.", "# TYPE ret2vqa_batch_size histogram"]
            out += self.batch_size.render("ret2vqa_batch_size", "")
            out += ["# HELP ret2vqa_stage_seconds_total Time spent in each pipeline stage (batches).",
                    "# TYPE ret2vqa_stage_seconds_total counter"]
            for stage, seconds in sorted(self.stage_seconds.items()):
                out.append(f'ret2vqa_stage_seconds_total{{stage="{stage}"}} {seconds:.6f}')
            out += ["# HELP ret2vqa_in_flight_requests Requests being received or answered.",
                    "# TYPE ret2vqa_in_flight_requests gauge", f"ret2vqa_in_flight_requests {self.in_flight}",
                    "# HELP ret2vqa_queue_depth Requests waiting for a batch.", "# TYPE ret2vqa_queue_depth gauge",
                    f"ret2vqa_queue_depth {queue_depth}",
                    "# HELP ret2vqa_ready 1 when the models are loaded and the store is open.",
                    "# TYPE ret2vqa_ready gauge", f"ret2vqa_ready {int(ready)}"]
        return "\n".join(out) + "\n"
