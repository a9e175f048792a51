"""SIP over TCP and TLS through real loopback sockets (RFC 3261 §18.3, RFC 5626 §3.5.1)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proxy.sip.message import Request, Response, build_response
from proxy.sip.parser import parse_message
from proxy.transport import (
    Address,
    SipTransports,
    install_event_loop_policy,
    make_client_context,
    make_server_context,
)

T = TypeVar("T")
Received = list[tuple[Request | Response, Address]]

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="no uvloop"))]


def run(coro: Coroutine[Any, Any, T], loop: str = "asyncio", timeout: float = 10.0) -> T:
    """Run a test coroutine on a fresh loop with a hard timeout."""

    async def guarded() -> T:
        return await asyncio.wait_for(coro, timeout)

    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(guarded())


def options(n: int = 1, transport: str = "TCP", body: bytes = b"") -> bytes:
    head = (
        "OPTIONS sip:sipmask@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bK-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=f{n}\r\n"
        "To: <sip:sipmask@127.0.0.1>\r\n"
        f"Call-ID: call-{n}@test\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def read_message(reader: asyncio.StreamReader) -> Request | Response:
    """One SIP message framed by Content-Length from a raw stream."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
    message = parse_message(head)
    length = int(message.headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return parse_message(head + body, stream=True)


def echo_server(**kwargs: Any) -> tuple[SipTransports, Received]:
    """Transports answering every request with 200 OK sent to the source address."""
    got: Received = []

    def on_message(message: Request | Response, source: Address) -> None:
        got.append((message, source))
        if isinstance(message, Request):
            transports.send(build_response(message, 200, to_tag="srv"), source)

    transports = SipTransports(on_message, **kwargs)
    return transports, got


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


# -- framing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_tcp_frames_many_messages_in_one_segment_and_one_split_over_many(loop: str) -> None:
    async def scenario() -> None:
        server, got = echo_server()
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
            writer.write(options(1) + options(2, body=body) + b"\r\n" + options(3))
            await writer.drain()
            await until(lambda: len(got) == 3)
            split = options(4, body=body)
            for i in range(0, len(split), 7):
                writer.write(split[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0.001)  # separate segments
            await until(lambda: len(got) == 4)
            assert [m.call_id for m, _ in got] == [f"call-{n}@test" for n in (1, 2, 3, 4)]
            assert got[1][0].body == body and got[3][0].body == body
            # every answer comes back on this very connection, in order
            for n in (1, 2, 3, 4):
                reply = await read_message(reader)
                assert isinstance(reply, Response) and reply.call_id == f"call-{n}@test"
            local = writer.get_extra_info("sockname")
            assert {source for _, source in got} == {Address("tcp", "127.0.0.1", local[1])}
            assert server.stats.tcp_connections_accepted == 1
            assert server.stats.tcp_connections_open == 1
        finally:
            writer.close()
            await server.close()

    run(scenario(), loop)


def test_tcp_keepalive_ping_answered_with_pong() -> None:
    async def scenario() -> None:
        server, got = echo_server()
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), 2.0) == b"\r\n"
            assert server.stats.keepalives == 1 and got == []
        finally:
            writer.close()
            await server.close()

    run(scenario())


def test_tcp_parse_error_answered_and_stream_continues() -> None:
    async def scenario() -> None:
        server, got = echo_server()
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            bad = options(1).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 BYE")
            writer.write(bad + options(2))
            first = await read_message(reader)
            assert isinstance(first, Response) and first.status == 400
            assert first.reason == "CSeq method does not match request method"
            second = await read_message(reader)
            assert isinstance(second, Response) and second.status == 200
            assert [m.call_id for m, _ in got] == ["call-2@test"]
        finally:
            writer.close()
            await server.close()

    run(scenario())


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        (options(1).replace(b"Content-Length: 0\r\n", b""), 400, "Missing Content-Length on stream transport"),
        (options(1, body=b"x" * 3000)[:600], 513, "Message too large"),
    ],
    ids=["no-content-length", "too-large"],
)
def test_tcp_framing_error_answered_then_connection_closed(payload: bytes, status: int, reason: str) -> None:
    async def scenario() -> None:
        server, got = echo_server(max_message_size=2048)
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            writer.write(payload)
            reply = await read_message(reader)
            assert isinstance(reply, Response)
            assert (reply.status, reply.reason) == (status, reason)
            assert reply.headers.get("via") == "SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-1;rport"
            assert await asyncio.wait_for(reader.read(), 2.0) == b""  # closed after the answer
            assert got == [] and server.stats.bad_requests_answered == 1
            await until(lambda: server.stats.tcp_connections_open == 0)
        finally:
            writer.close()
            await server.close()

    run(scenario())


def test_tcp_idle_connection_closed() -> None:
    async def scenario() -> None:
        server, _ = echo_server(tcp_idle_timeout=0.2)
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            await asyncio.sleep(0.1)
            writer.write(b"\r\n\r\n")  # activity pushes the deadline out
            assert await reader.readexactly(2) == b"\r\n"
            await asyncio.sleep(0.15)
            assert server.stats.tcp_connections_open == 1
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(reader.read(), 2.0) == b""
            assert asyncio.get_running_loop().time() - started < 1.0
            await until(lambda: server.stats.tcp_connections_open == 0 and server.connection_count() == 0)
        finally:
            writer.close()
            await server.close()

    run(scenario())


# -- outgoing connections ----------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_tcp_client_connection_reused_both_ways(loop: str) -> None:
    async def scenario() -> None:
        server, at_server = echo_server()
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        at_client: Received = []
        client = SipTransports(lambda m, s: at_client.append((m, s)))
        await client.listen("tcp", "127.0.0.1", 0)
        dest = Address("tcp", "127.0.0.1", port)
        try:
            # sent back to back: the second one queues behind the connect
            client.send(parse_message(options(1)), dest)
            client.send(options(2), dest)
            await until(lambda: len(at_client) == 2)
            client.send(options(3), dest)
            await until(lambda: len(at_client) == 3)
            assert [m.call_id for m, _ in at_client] == ["call-1@test", "call-2@test", "call-3@test"]
            assert all(isinstance(m, Response) and m.status == 200 for m, _ in at_client)
            assert {s for _, s in at_client} == {dest}
            assert len({s for _, s in at_server}) == 1  # one connection, one source port
            assert server.stats.tcp_connections_accepted == 1
            assert client.connection_count("tcp") == 1 and server.connection_count("tcp") == 1
            # the server sends a new request to the client's address: same connection again
            server.send(options(4), at_server[0][1])
            await until(lambda: len(at_client) == 4)
            assert at_client[3][1] == dest
            assert client.stats.tcp_connections_accepted == 0
        finally:
            await client.close()
            await server.close()

    run(scenario(), loop)


def test_tcp_connect_failure_reported() -> None:
    async def scenario() -> None:
        probe = SipTransports(lambda m, s: None)
        _, port = await probe.listen("tcp", "127.0.0.1", 0)
        await probe.close()  # nothing listens there any more
        failed: list[Address] = []
        client = SipTransports(lambda m, s: None, on_send_error=failed.append)
        dest = Address("tcp", "127.0.0.1", port)
        try:
            client.send(options(1), dest)
            client.send(options(2), dest)  # queued on the same attempt
            await until(lambda: failed == [dest])
            assert client.stats.send_errors == 1 and client.connection_count() == 0
        finally:
            await client.close()

    run(scenario())


# -- TLS ---------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipmask.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_round_trip_with_verified_self_signed_cert(tmp_path: Path, loop: str) -> None:
    cert, key = _self_signed(tmp_path)

    async def scenario() -> None:
        server, at_server = echo_server(tls_server_context=make_server_context(cert, key))
        host, port = await server.listen("tls", "127.0.0.1", 0)
        assert server.local_address("tls") == (host, port)
        at_client: Received = []
        client = SipTransports(
            lambda m, s: at_client.append((m, s)), tls_client_context=make_client_context(ca=cert)
        )
        dest = Address("tls", "127.0.0.1", port)
        try:
            client.send(options(1, "TLS"), dest)
            client.send(options(2, "TLS"), dest)
            await until(lambda: len(at_client) == 2)
            assert [m.call_id for m, _ in at_client] == ["call-1@test", "call-2@test"]
            assert at_client[0][1] == dest
            assert at_server[0][1].transport == "tls"
            assert server.stats.tcp_connections_accepted == 1
        finally:
            await client.close()
            await server.close()

    run(scenario(), loop)


def test_tls_unverifiable_server_is_a_send_error(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)

    async def scenario() -> None:
        server, got = echo_server(tls_server_context=make_server_context(cert, key))
        _, port = await server.listen("tls", "127.0.0.1", 0)
        failed: list[Address] = []
        client = SipTransports(
            lambda m, s: None, tls_client_context=make_client_context(), on_send_error=failed.append
        )
        dest = Address("tls", "127.0.0.1", port)
        try:
            client.send(options(1, "TLS"), dest)
            await until(lambda: failed == [dest])
            assert got == []
        finally:
            await client.close()
            await server.close()

    run(scenario())


def test_tls_listen_needs_a_server_context() -> None:
    async def scenario() -> None:
        transports = SipTransports(lambda m, s: None)
        with pytest.raises(ValueError, match="tls_server_context"):
            await transports.listen("tls", "127.0.0.1", 0)
        with pytest.raises(ValueError, match="unknown transport"):
            await transports.listen("sctp", "127.0.0.1", 0)
        with pytest.raises(LookupError):
            transports.local_address("tcp")
        await transports.close()

    run(scenario())


def test_install_event_loop_policy_prefers_uvloop() -> None:
    before = asyncio.get_event_loop_policy()
    try:
        used = install_event_loop_policy()
        assert used == (uvloop is not None)
        if used:
            assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    finally:
        asyncio.set_event_loop_policy(before)


def test_make_client_context_without_verification() -> None:
    context = make_client_context(verify=False)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


# -- limits: connections per source and in all, slowloris ------------------------------------


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True when the server closed (or reset) the connection within ``timeout``."""
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


@pytest.mark.parametrize("limits, refused_by", [
    ({"tcp_max_per_source": 3}, "per source"),
    ({"tcp_max_connections": 3}, "in all"),
])
def test_tcp_connections_past_a_limit_are_refused_and_the_others_keep_working(
        limits: dict[str, int], refused_by: str) -> None:
    async def scenario() -> None:
        server, _ = echo_server(**limits)
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        conns = [await connect(port) for _ in range(5)]
        try:
            closed = [await _closed_by_server(r, 0.3) for r, _ in conns[3:]]
            assert closed == [True, True], refused_by
            assert server.stats.tcp_connections_refused == 2
            for n, (reader, writer) in enumerate(conns[:3]):
                writer.write(options(n + 1))
                assert (await read_message(reader)).status == 200  # type: ignore[union-attr]
            conns[0][1].close()  # one leaves: a new one is let in
            await until(lambda: server.stats.tcp_connections_open == 2)
            reader, writer = await connect(port)
            conns.append((reader, writer))
            writer.write(options(9))
            assert (await read_message(reader)).status == 200  # type: ignore[union-attr]
            assert server.stats.tcp_connections_refused == 2
        finally:
            for _, writer in conns:
                writer.close()
            await server.close()

    run(scenario())


def test_tcp_slowloris_trickle_is_cut_off_after_the_message_timeout() -> None:
    """Bytes that continue a begun message buy no time: it must be complete in time."""
    async def scenario() -> None:
        server, got = echo_server(tcp_message_timeout=0.4)
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            data = options(1)
            for i in range(len(data) - 1):  # one byte every 50 ms, never the last one
                if reader.at_eof() or writer.is_closing():
                    break
                try:
                    writer.write(data[i:i + 1])
                    await writer.drain()
                except (ConnectionResetError, BrokenPipeError):
                    break
                await asyncio.sleep(0.05)
                if server.stats.tcp_message_timeouts:
                    break
            assert await _closed_by_server(reader)
            assert 0.35 < loop.time() - started < 1.5
            assert server.stats.tcp_message_timeouts == 1 and not got
        finally:
            writer.close()
            await server.close()

    run(scenario())


def test_tcp_accepted_connection_that_sends_nothing_is_closed_after_the_message_timeout() -> None:
    async def scenario() -> None:
        server, _ = echo_server(tcp_message_timeout=0.3, tcp_idle_timeout=300)
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            assert await _closed_by_server(reader, 2.0)
            assert server.stats.tcp_message_timeouts == 1
            await until(lambda: server.stats.tcp_connections_open == 0)
        finally:
            writer.close()
            await server.close()

    run(scenario())


def test_tcp_complete_messages_far_apart_keep_the_connection() -> None:
    """The message timeout bounds one message, not the pause between messages."""
    async def scenario() -> None:
        server, got = echo_server(tcp_message_timeout=0.2, tcp_idle_timeout=300)
        _, port = await server.listen("tcp", "127.0.0.1", 0)
        reader, writer = await connect(port)
        try:
            for n in range(1, 4):
                writer.write(options(n))
                assert (await read_message(reader)).status == 200  # type: ignore[union-attr]
                await asyncio.sleep(0.35)
            assert server.stats.tcp_message_timeouts == 0 and len(got) == 3
            assert server.stats.tcp_connections_open == 1
        finally:
            writer.close()
            await server.close()

    run(scenario())


def test_default_connection_limit_leaves_descriptors_to_the_rest_of_the_process() -> None:
    import resource

    from proxy.transport.transports import default_max_connections

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert default_max_connections() == 1024 - 128
        assert SipTransports(lambda m, s: None).tcp_max_connections == 896
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
