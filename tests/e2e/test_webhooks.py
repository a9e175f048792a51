"""Event webhooks end to end: a real SIPp call through sipmask produces signed
call.started / call.answered / call.ended deliveries to a real HTTP receiver, without numbers."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    CALLEE_IP,
    assert_sipp_ok,
    free_port,
    number_forms,
)

pytestmark = pytest.mark.e2e

SECRET = "webhook-test-secret"


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.got = []
    server = HTTPServer(("127.0.0.1", free_port("127.0.0.1")), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events"
    server.shutdown()
    server.server_close()


def test_call_events_are_signed_and_carry_no_numbers(sipp, sipmask_factory, receiver):
    callee = sipp.start_uas("uas_basic.xml", calls=1)
    sm = sipmask_factory(
        [(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])],
        extra_toml=f'[[webhooks]]\nurl = "{receiver}"\nsecret = "{SECRET}"\n',
    )
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_Receiver.got) < 3:
        time.sleep(0.05)
    kinds = [h.get("x-sipmask-event") for h, _ in _Receiver.got]
    assert sorted(kinds) == ["call.answered", "call.ended", "call.started"], kinds
    for headers, body in _Receiver.got:
        ts = headers["x-sipmask-timestamp"]
        want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-sipmask-signature"], want)
        text = body.decode()
        for number in (A_REAL, B_REAL):
            for form in number_forms(number):
                assert form not in text, f"{form} in a webhook body"
    ended = next(json.loads(b) for h, b in _Receiver.got if h["x-sipmask-event"] == "call.ended")
    assert ended["type"] == "call.ended"
    assert ended["data"]["outcome"] == "completed" and ended["data"]["session_id"].startswith("ps_")
