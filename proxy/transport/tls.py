"""TLS contexts for SIP over TLS (RFC 3261 §26.3.1: TLS 1.2 or later here)."""

from __future__ import annotations

import os
import ssl

__all__ = ["make_client_context", "make_server_context"]

StrPath = str | os.PathLike[str]


def make_server_context(cert: StrPath, key: StrPath, ca: StrPath | None = None) -> ssl.SSLContext:
    """A server context presenting ``cert`` (PEM chain) with private ``key``.

    With ``ca`` the server requires and verifies client certificates against it (mutual TLS,
    as trunks that authenticate by certificate expect); without it clients are not asked for one.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.fspath(cert), os.fspath(key))
    if ca is not None:
        context.load_verify_locations(cafile=os.fspath(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def make_client_context(ca: StrPath | None = None, verify: bool = True) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca`` (or the system store).

    ``verify=False`` turns off certificate and host name checks: for lab set-ups only.
    """
    if verify:
        context = ssl.create_default_context(cafile=os.fspath(ca) if ca is not None else None)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
