"""TCP abuse against a real ``sipmask run`` (RFC 3261 §18.3 streams): a flood of idle
connections under a low file-descriptor limit must not take the API (or SIP) down, and is
logged; connections that send nothing, or trickle a message, are closed in time."""

from __future__ import annotations

import resource
import socket
import time
import urllib.request

import pytest

from .conftest import SIPMASK_IP, options_ping

pytestmark = pytest.mark.e2e


def _healthz(sm) -> int:
    with urllib.request.urlopen(sm.api_url + "/healthz", timeout=2) as reply:
        return int(reply.status)


def _metric(sm, name: str) -> float:
    with urllib.request.urlopen(sm.api_url + "/metrics", timeout=2) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def test_idle_connection_flood_under_a_low_fd_limit_leaves_the_api_and_sip_answering(sipmask_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 700:
        pytest.skip("needs 700 file descriptors for the test's own connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 700), hard))
    # one source address here: lift the per-source cap so the descriptor-derived one is tested
    sm = sipmask_factory(nofile=256, sip_toml="tcp_max_connections_per_source = 1000")
    # sipmask may accept 256 - 64 = 192 connections
    conns: list[socket.socket] = []
    try:
        for _ in range(330):  # well past the limit, from a handful of source addresses
            s = socket.socket()
            s.settimeout(2)
            s.connect((SIPMASK_IP, sm.tcp_port))
            conns.append(s)
        deadline = time.monotonic() + 5
        while _metric(sm, "sipmask_tcp_connections_refused_total") < 330 - 192 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _metric(sm, "sipmask_tcp_connections_refused_total") >= 330 - 192
        assert _healthz(sm) == 200
        assert options_ping(SIPMASK_IP, sm.udp_port) == 200
        refused = [e for e in sm.log_events() if e.get("event") == "transport.connections_refused"]
        assert refused and refused[0]["limit"] == "tcp_max_connections", refused[:1]
    finally:
        for s in conns:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_silent_and_trickling_connections_are_closed_after_the_message_timeout(sipmask_factory):
    sm = sipmask_factory(sip_toml="tcp_message_timeout_s = 1.0")
    silent = socket.create_connection((SIPMASK_IP, sm.tcp_port), timeout=5)
    trickle = socket.create_connection((SIPMASK_IP, sm.tcp_port), timeout=5)
    try:
        started = time.monotonic()
        for byte in b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKx\r\n":
            try:
                trickle.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - started > 4:
                break
        for s in (silent, trickle):
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
        assert _metric(sm, "sipmask_tcp_message_timeouts_total") == 2
    finally:
        silent.close()
        trickle.close()
