"""Observability: structlog setup with phone-number redaction, and a metrics registry."""

from .logging import FORMATS, LEVELS, configure_logging, get_logger
from .metrics import CONTENT_TYPE, DEFAULT_BUCKETS, Counter, Gauge, Histogram, Metrics
from .redaction import PHONE_PATTERN, Redactor, contains_phone_number

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "FORMATS",
    "LEVELS",
    "PHONE_PATTERN",
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
    "Redactor",
    "configure_logging",
    "contains_phone_number",
    "get_logger",
]
