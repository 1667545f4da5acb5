"""Prometheus metrics of the gateway."""

from prometheus_client import Counter, Gauge, Histogram

JOBS_SUBMITTED = Counter("realrag_jobs_submitted_total", "Generation jobs accepted", ["model"])
HTTP_REQUESTS = Counter("realrag_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_SECONDS = Histogram("realrag_http_request_seconds", "HTTP request latency", ["route"])
QUEUE_DEPTH = Gauge("realrag_queue_depth", "Messages waiting in the worker queue (reserved ones excluded)")
