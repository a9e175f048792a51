"""HTTP management API: sessions, the virtual-number pool, interactions, audit, health,
readiness, Prometheus metrics and the OpenAPI document. aiohttp, in the SIP event loop."""

from .context import CTX, ApiContext
from .openapi import openapi_document
from .server import ApiServer, build_app, route_table, start_api

__all__ = ["ApiContext", "ApiServer", "CTX", "build_app", "openapi_document", "route_table", "start_api"]
