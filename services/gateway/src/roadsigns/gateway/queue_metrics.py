"""Queue depth per worker pool, read from the Redis broker at scrape time.

Celery's Redis transport keeps each queue as a Redis list named after the queue, the same
list KEDA's redis scaler watches, so this gauge shows what the autoscaler sees. Messages a
worker has taken but not finished are not in the list (they wait in `unacked`).
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from roadsigns.shared.tasks import Queue

QUEUES = tuple(str(q) for q in Queue)


class QueueDepthCollector(Collector):
    def __init__(self, broker_url: str, queues: tuple[str, ...] = QUEUES) -> None:
        self.queues = queues
        self.client = redis.Redis.from_url(broker_url, socket_timeout=1, socket_connect_timeout=1)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("roadsigns_queue_messages", "Messages waiting in each broker queue", labels=["queue"])
        up = GaugeMetricFamily("roadsigns_broker_up", "1 when the broker answered the last queue-depth read")
        try:
            pipe = self.client.pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(queue)
            for queue, length in zip(self.queues, pipe.execute(), strict=True):
                depth.add_metric([queue], float(length))
            up.add_metric([], 1.0)
        except redis.RedisError:
            # No depth samples rather than false zeros: an unknown depth must not look like an empty queue.
            up.add_metric([], 0.0)
        yield depth
        yield up


_registered: dict[int, QueueDepthCollector] = {}


def register_queue_metrics(broker_url: str, registry: CollectorRegistry = REGISTRY) -> QueueDepthCollector:
    """Register once per registry; a second app in the same process (tests) replaces the first."""
    previous = _registered.pop(id(registry), None)
    if previous is not None:
        registry.unregister(previous)
    collector = _registered[id(registry)] = QueueDepthCollector(broker_url)
    registry.register(collector)
    return collector
