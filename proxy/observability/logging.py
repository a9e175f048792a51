"""structlog setup: dotted event names, JSON or console output, phone numbers redacted.

Call :func:`configure_logging` once at start-up, before anything logs. Then
``log = get_logger(__name__)`` and ``log.info("call.received", call_id=...)``. Hot paths should
bind once (``log = get_logger(__name__).bind(call_id=...)``) and call ``log.debug(...)``: with
:func:`structlog.make_filtering_bound_logger` a disabled level is a no-op method, so nothing is
formatted. Pass values, not pre-formatted strings, so nothing is built when the level is off.

Records from the standard library :mod:`logging` (asyncio, third-party libraries) and
:mod:`warnings` go through the same redaction and renderer, so nothing in the process prints a
number by another route.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import Processor

from .redaction import Redactor

__all__ = ["LEVELS", "FORMATS", "configure_logging", "get_logger"]

LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
"""Accepted level names (lower case) and their numeric values."""

FORMATS: Final = ("auto", "json", "console")
"""Accepted output formats; "auto" is console on a terminal, JSON otherwise."""

_HANDLER_MARK = "_sipmask_handler"


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _renderer(fmt: str, stream: TextIO) -> Processor:
    if fmt == "auto":
        fmt = "console" if _is_tty(stream) else "json"
    if fmt == "console":
        colors = _is_tty(stream) and "NO_COLOR" not in os.environ
        return structlog.dev.ConsoleRenderer(colors=colors)
    return structlog.processors.JSONRenderer()


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger for the whole process.

    Args:
        level: one of :data:`LEVELS` (case-insensitive; "warn" means "warning").
        fmt: "json", "console" or "auto" (console if *stream* is a terminal, else JSON).
        redactor: the redaction processor. None uses a fresh random key, so numbers are
            still hidden, but tokens only match within this process.
        stream: where log lines go; default ``sys.stderr`` (looked up at call time).

    Raises:
        ValueError: unknown level or format.
    """
    name = level.strip().lower()
    if name == "warn":
        name = "warning"
    if name not in LEVELS:
        raise ValueError(f"log level: expected one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if stream is None:
        stream = sys.stderr
    if redactor is None:
        redactor = Redactor(os.urandom(32))
    levelno = LEVELS[name]
    renderer = _renderer(fmt, stream)

    # Everything that adds text runs before the redactor; the renderer runs last.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, redactor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        # Not cached: a logger used before configure_logging() must not keep an
        # unredacted configuration. Hot paths bind once and keep the bound logger.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(levelno, shared, redactor, renderer, stream)


def _add_stdlib_logger_name(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger_name"] = record.name
    return event_dict


def _route_stdlib(
    levelno: int,
    shared: list[Processor],
    redactor: Redactor,
    renderer: Processor,
    stream: TextIO,
) -> None:
    """Send stdlib logging (and warnings) through the same redaction and renderer."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_add_stdlib_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redactor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    # Replace every root handler: one that is not ours would print unredacted text.
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, _HANDLER_MARK, False):
            old.close()
    root.addHandler(handler)
    root.setLevel(levelno)
    logging.captureWarnings(True)


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """Return a structlog logger; *name* is bound as ``logger_name`` when given.

    The logger is a lazy proxy: it follows the configuration current when it first logs, so
    module-level ``log = get_logger(__name__)`` is fine before :func:`configure_logging`.
    """
    if name is not None:
        initial_values.setdefault("logger_name", name)
    return structlog.get_logger(**initial_values)
