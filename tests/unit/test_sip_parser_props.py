"""Property tests (conventions §8): parse(serialise(m)) == m; garbage raises only SipParseError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip import (
    KEEPALIVE,
    Headers,
    KeepAlive,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    parse_message,
)

from .test_sip_parser import SDP, req

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: generating whole messages dominates the run time: fewer, still varied, examples
GENERATED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(st.sampled_from(_TOKEN), min_size=1, max_size=12)
alnum = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"), min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(alnum, min_size=1, max_size=3).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[2001:db8::1]", "[::1]", "[fe80::a:b]"]),
)
ports = st.one_of(st.none(), st.integers(1, 65535))
params = st.lists(st.tuples(alnum, st.one_of(st.none(), alnum)), max_size=3).map(
    lambda ps: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in ps))


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "tel"]))
    if scheme == "tel":
        return f"tel:+{draw(st.integers(1000, 10**12))}{draw(params)}"
    user = draw(st.one_of(st.none(), alnum))
    port = draw(ports)
    return (f"{scheme}:{'' if user is None else user + '@'}{draw(hosts)}"
            f"{'' if port is None else f':{port}'}{draw(params)}")


def _value_ok(v: str) -> bool:
    return v == v.strip() and "\r" not in v and "\n" not in v and "\x00" not in v


header_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=30
).filter(_value_ok)
display = st.one_of(st.just(""), alnum.map(lambda d: d + " "), alnum.map(lambda d: f'"{d} \\"x\\"" '))


@st.composite
def name_addrs(draw: st.DrawFn, tag: bool) -> str:
    t = f";tag={draw(alnum)}" if tag else ""
    return f"{draw(display)}<{draw(sip_uris())}>{t}"


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "REGISTER", "NEWMETHOD"]) | tokens)
    vias = draw(st.lists(
        st.tuples(st.sampled_from(["UDP", "TCP", "TLS"]), hosts, ports, alnum), min_size=1, max_size=3))
    items: list[tuple[str, str]] = [
        (draw(st.sampled_from(["Via", "v", "VIA"])),
         f"SIP/2.0/{t} {h}{'' if p is None else f':{p}'};branch=z9hG4bK{b}") for t, h, p, b in vias]
    items += [
        (draw(st.sampled_from(["From", "f"])), draw(name_addrs(True))),
        (draw(st.sampled_from(["To", "t"])), draw(name_addrs(False))),
        (draw(st.sampled_from(["Call-ID", "i"])), draw(alnum) + "@" + draw(hosts)),
        ("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}"),
    ]
    extra = draw(st.lists(st.tuples(tokens.map(lambda t: "X-" + t), header_values), max_size=5))
    items += extra
    items = draw(st.permutations(items))
    body = draw(st.one_of(st.just(b""), st.just(SDP), st.binary(max_size=50)))
    items.append((draw(st.sampled_from(["Content-Length", "l"])), str(len(body))))
    headers = Headers(items)
    if draw(st.booleans()):
        status = draw(st.integers(100, 699))
        return Response(status, draw(st.sampled_from(["OK", "", "Some Reason Phrase"])), headers, body)
    return Request(method, draw(sip_uris()), headers, body)


def _same(a: Request | Response, b: Request | Response) -> None:
    assert type(a) is type(b)
    if isinstance(a, Request):
        assert isinstance(b, Request)
        assert (a.method, a.uri, a.version) == (b.method, b.uri, b.version)
    else:
        assert isinstance(b, Response)
        assert (a.status, a.reason, a.version) == (b.status, b.reason, b.version)
    assert a.headers.items() == b.headers.items()
    assert a.body == b.body


@GENERATED
@given(messages())
def test_property_parse_serialise_round_trip(m: Request | Response) -> None:
    wire = m.serialise()
    again = parse_message(wire)
    _same(m, again)
    assert again.serialise() == wire
    _same(m, parse_message(wire, stream=True))
    # the parsed views agree with what was generated
    assert again.top_via.branch == again.via[0].branch
    assert again.from_tag is not None and again.to.uri
    if isinstance(again, Request):
        assert str(again.request_uri) == again.uri


def _touch_everything(m: Request | Response) -> None:
    for name in ("top_via", "from_", "to", "via", "cseq", "call_id", "from_tag", "to_tag", "branch"):
        try:
            getattr(m, name)
        except SipParseError:
            pass
    for fn in (m.contacts, (lambda: m.request_uri) if isinstance(m, Request) else m.contacts):
        try:
            fn()
        except SipParseError:
            pass
    try:
        m.headers.values("contact")
    except SipParseError:
        pass


@settings(FAST, max_examples=500)
@given(st.binary(max_size=400), st.booleans())
def test_property_arbitrary_bytes_raise_only_sip_parse_error(data: bytes, stream: bool) -> None:
    try:
        m = parse_message(data, stream=stream)
    except SipParseError:
        return
    _touch_everything(m)


@FAST
@given(st.data())
def test_property_mutated_messages_raise_only_sip_parse_error(data: st.DataObject) -> None:
    wire = bytearray(req("Contact: \"A\" <sip:a@[2001:db8::1]:5060;transport=tcp>;q=1",
                         "Record-Route: <sip:p1;lr>, <sip:p2;lr>", body=b"body"))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.sampled_from(list(b'\x00\r\n \t:;,"<>@[]\\=/0\xff\xc3')))
        if op == "flip":
            wire[pos] = byte
        elif op == "insert":
            wire.insert(pos, byte)
        else:
            del wire[pos]
    stream = data.draw(st.booleans())
    try:
        m = parse_message(bytes(wire), stream=stream)
    except SipParseError as exc:
        assert isinstance(exc.status, int) and exc.reason
        return
    _touch_everything(m)


@settings(GENERATED, max_examples=100)
@given(st.lists(st.tuples(messages(), st.booleans()), min_size=1, max_size=3), st.data())
def test_property_stream_framer_any_split(msgs: list[tuple[Request | Response, bool]],
                                          data: st.DataObject) -> None:
    expected: list[bytes | KeepAlive] = []
    stream = b""
    for m, ping in msgs:
        wire = m.serialise()
        expected.append(wire)
        stream += wire
        if ping:
            expected.append(KEEPALIVE)
            stream += b"\r\n\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer = StreamFramer()
    got: list[bytes | KeepAlive] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += framer.feed(stream[prev:cut])
        prev = cut
    assert got == expected
    assert framer.buffered == 0
    for item in got:
        if isinstance(item, bytes):
            parse_message(item, stream=True)
