"""RFC 3261 §12 dialogs: creation (UAC/UAS), route sets, CSeq rules, target refresh."""

from __future__ import annotations

from proxy.sip.dialog import Dialog
from proxy.sip.message import Request, Response, build_response
from proxy.sip.parser import parse_message


def _parse(text: str) -> Request | Response:
    return parse_message(text.replace("\n", "\r\n").encode())


INVITE = """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Record-Route: <sip:p2.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>
Content-Length: 0

"""

OK = """SIP/2.0 200 OK
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.4>
Record-Route: <sip:p2.biloxi.example.com;lr>
Record-Route: <sip:p1.atlanta.example.com;lr>
Content-Length: 0

"""


def _invite() -> Request:
    msg = _parse(INVITE)
    assert isinstance(msg, Request)
    return msg


def _ok() -> Response:
    msg = _parse(OK)
    assert isinstance(msg, Response)
    return msg


def test_12_1_2_uac_dialog_from_2xx() -> None:
    d = Dialog.uac(_invite(), _ok())
    assert d.id == ("a84b4c76e66710", "1928301774", "a6c85cf")
    assert d.local_uri == '"Alice" <sip:alice@atlanta.example.com>'
    assert d.remote_uri == "Bob <sip:bob@biloxi.example.com>"
    assert d.local_cseq == 314159 and d.remote_cseq is None
    assert d.remote_target == "sip:bob@192.0.2.4"
    # §12.1.2: route set = Record-Route of the response, reversed
    assert d.route_set == ["<sip:p1.atlanta.example.com;lr>", "<sip:p2.biloxi.example.com;lr>"]
    assert d.state == "confirmed" and not d.secure


def test_12_1_2_uac_early_dialog_then_confirmed() -> None:
    invite = _invite()
    ringing = build_response(invite, 180, to_tag="a6c85cf", extra=[("Contact", "<sip:bob@192.0.2.9>")])
    d = Dialog.uac(invite, ringing)
    assert d.state == "early" and d.route_set == [] and d.remote_target == "sip:bob@192.0.2.9"
    d.confirm(_ok())
    assert d.state == "confirmed" and d.remote_target == "sip:bob@192.0.2.4"
    assert d.route_set[0] == "<sip:p1.atlanta.example.com;lr>"


def test_12_1_1_uas_dialog() -> None:
    d = Dialog.uas(_invite(), "a6c85cf", _ok())
    assert d.id == ("a84b4c76e66710", "a6c85cf", "1928301774")
    assert d.local_uri == "Bob <sip:bob@biloxi.example.com>"
    assert d.remote_uri == '"Alice" <sip:alice@atlanta.example.com>'
    assert d.remote_cseq == 314159 and d.local_cseq == 0
    assert d.remote_target == "sip:alice@pc33.atlanta.example.com"
    # §12.1.1: route set = Record-Route of the request, in order
    assert d.route_set == ["<sip:p2.biloxi.example.com;lr>", "<sip:p1.atlanta.example.com;lr>"]
    assert d.state == "confirmed"
    assert Dialog.uas(_invite(), "x", None).state == "early"


def test_12_1_sips_request_uri_makes_secure_dialog() -> None:
    invite = _parse(INVITE.replace("INVITE sip:bob", "INVITE sips:bob"))
    assert isinstance(invite, Request)
    assert Dialog.uac(invite, _ok()).secure


def test_12_2_1_1_loose_routing_request() -> None:
    d = Dialog.uac(_invite(), _ok())
    bye = d.create_request("BYE", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-b", "<sip:alice@192.0.2.1>")
    assert bye.uri == "sip:bob@192.0.2.4"  # remote target
    assert bye.headers.get_all("route") == ["<sip:p1.atlanta.example.com;lr>", "<sip:p2.biloxi.example.com;lr>"]
    assert bye.cseq.number == 314160 and bye.cseq.method == "BYE"
    assert bye.from_tag == "1928301774" and bye.to_tag == "a6c85cf"
    assert bye.call_id == "a84b4c76e66710" and bye.headers.get("max-forwards") == "70"
    assert bye.headers.get("contact") == "<sip:alice@192.0.2.1>"
    assert d.next_hop() == "sip:p1.atlanta.example.com;lr"
    # round-trips
    assert isinstance(parse_message(bye.serialise()), Request)


def test_12_2_1_1_strict_routing_request() -> None:
    d = Dialog.uac(_invite(), _ok())
    d.route_set = ["<sip:strict1.example.com>", "<sip:p2.example.com;lr>"]
    req = d.create_request("INFO", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-i", None, max_forwards=10)
    # §12.2.1.1: R-URI = first route, Route = the rest plus the remote target last
    assert req.uri == "sip:strict1.example.com"
    assert req.headers.get_all("route") == ["<sip:p2.example.com;lr>", "<sip:bob@192.0.2.4>"]
    assert req.headers.get("contact") is None and req.headers.get("max-forwards") == "10"
    assert d.next_hop() == "sip:strict1.example.com"


def test_12_2_1_1_no_route_set_next_hop_is_remote_target() -> None:
    d = Dialog.uas(_invite(), "t")
    d.route_set = []
    assert d.next_hop() == "sip:alice@pc33.atlanta.example.com"
    req = d.create_request("BYE", "SIP/2.0/UDP h;branch=z9hG4bK-1", None)
    assert req.uri == "sip:alice@pc33.atlanta.example.com" and req.headers.get_all("route") == []


def test_12_2_1_1_cseq_increments_except_ack_and_cancel() -> None:
    d = Dialog.uac(_invite(), _ok())
    via = "SIP/2.0/UDP h;branch=z9hG4bK-1"
    ack = d.create_request("ACK", via, None, cseq=314159)
    assert ack.cseq.number == 314159 and ack.cseq.method == "ACK"
    assert d.local_cseq == 314159
    reinvite = d.create_request("INVITE", via, "<sip:a@h>")
    assert reinvite.cseq.number == 314160
    assert d.create_request("ACK", via, None).cseq.number == 314160  # default: current (the INVITE)
    assert d.create_request("CANCEL", via, None).cseq.number == 314160
    assert d.create_request("UPDATE", via, None).cseq.number == 314161
    assert d.create_request("INFO", via, None, cseq=500).cseq.number == 500
    assert d.local_cseq == 500


def test_12_2_1_1_uas_first_request_uses_cseq_1() -> None:
    d = Dialog.uas(_invite(), "a6c85cf", _ok())
    bye = d.create_request("BYE", "SIP/2.0/UDP h;branch=z9hG4bK-1", None)
    assert bye.cseq.number == 1
    assert bye.from_tag == "a6c85cf" and bye.to_tag == "1928301774"
    assert bye.uri == "sip:alice@pc33.atlanta.example.com"


def test_12_2_2_remote_cseq_lower_than_last_answered_500() -> None:
    d = Dialog.uac(_invite(), _ok())
    assert d.remote_cseq is None
    bye = _parse(INVITE.replace("CSeq: 314159 INVITE", "CSeq: 7 BYE").replace("INVITE sip:", "BYE sip:"))
    assert isinstance(bye, Request)
    assert d.receive_request(bye) is None and d.remote_cseq == 7
    older = _parse(INVITE.replace("CSeq: 314159 INVITE", "CSeq: 6 INFO").replace("INVITE sip:", "INFO sip:"))
    assert isinstance(older, Request)
    assert d.receive_request(older) == 500 and d.remote_cseq == 7
    same = _parse(INVITE.replace("CSeq: 314159 INVITE", "CSeq: 7 ACK").replace("INVITE sip:", "ACK sip:"))
    assert isinstance(same, Request)
    assert d.receive_request(same) is None


def test_12_2_target_refresh_by_reinvite_update_and_their_2xx() -> None:
    d = Dialog.uas(_invite(), "a6c85cf")
    reinvite = _parse(INVITE.replace("pc33.atlanta.example.com>", "198.51.100.3:5070>"))
    assert isinstance(reinvite, Request)
    d.target_refresh(reinvite)
    assert d.remote_target == "sip:alice@198.51.100.3:5070"
    info = _parse(INVITE.replace("INVITE sip:", "INFO sip:").replace("314159 INVITE", "314160 INFO")
                  .replace("pc33.atlanta.example.com>", "203.0.113.1>"))
    assert isinstance(info, Request)
    d.target_refresh(info)  # INFO is not a target refresh
    assert d.remote_target == "sip:alice@198.51.100.3:5070"
    uac = Dialog.uac(_invite(), _ok())
    refreshed = _parse(OK.replace("192.0.2.4>", "192.0.2.77>"))
    assert isinstance(refreshed, Response)
    uac.target_refresh(refreshed)
    assert uac.remote_target == "sip:bob@192.0.2.77"
    failed = _parse(OK.replace("200 OK", "488 Not Acceptable Here").replace("192.0.2.4>", "192.0.2.99>"))
    assert isinstance(failed, Response)
    uac.target_refresh(failed)
    assert uac.remote_target == "sip:bob@192.0.2.77"


def test_12_1_1_uas_dialog_request_and_route_set_replaced_before_first_use() -> None:
    d = Dialog.uas(_invite(), "a6c85cf")
    bye = d.create_request("BYE", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-u", None)
    assert bye.headers.get("from") == "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"
    assert bye.headers.get("to") == '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'
    assert bye.headers.get_all("route") == ["<sip:p2.biloxi.example.com;lr>", "<sip:p1.atlanta.example.com;lr>"]
    assert bye.uri == "sip:alice@pc33.atlanta.example.com" and bye.cseq.number == 1
    d = Dialog.uas(_invite(), "a6c85cf")
    d.route_set = ["<sip:p9.example.com;lr>"]
    assert d.route_set == ["<sip:p9.example.com;lr>"] and d.next_hop() == "sip:p9.example.com;lr"
    assert d.remote_uri == '"Alice" <sip:alice@atlanta.example.com>'
