"""The gateway's Prometheus metrics, served at /metrics on the metrics port (see `__main__`), not by the app."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

requests = Counter("kubescribe_gateway_requests", "HTTP requests answered.", ["method", "route", "status"])
request_seconds = Histogram("kubescribe_gateway_request_seconds", "Time to answer an HTTP request.", ["route"])
uploaded_bytes = Counter("kubescribe_gateway_uploaded_bytes", "Bytes of audio uploaded to S3.")
jobs_submitted = Counter("kubescribe_gateway_jobs_submitted", "TranscriptionJobs created.")
event_streams = Gauge("kubescribe_gateway_event_streams", "Clients following a job's events.")
