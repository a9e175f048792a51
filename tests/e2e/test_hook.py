"""The lookup hook end to end: sipmask asks a real HTTP endpoint about a caller no session
knows, and connects (or rejects) a real SIPp call on its answer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from .conftest import (
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    B_VIRTUAL,
    CALLEE_IP,
    assert_isolated,
    assert_sipp_ok,
    find,
    free_port,
    number_forms,
)

pytestmark = pytest.mark.e2e

WELCOME = "+15553334444"  # the hook connects this unknown caller
UNWELCOME = "+15553335555"  # and rejects this one


class _Hook(BaseHTTPRequestHandler):
    asked: list[dict[str, object]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).asked.append(body)
        if body.get("caller") == WELCOME:
            answer = {"action": "connect", "number": B_REAL, "present": B_VIRTUAL}
        else:
            answer = {"action": "reject"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server():
    _Hook.asked = []
    server = HTTPServer(("127.0.0.1", free_port("127.0.0.1")), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/lookup"
    server.shutdown()
    server.server_close()


def test_hook_connects_and_rejects_unknown_callers(sipp, sipmask_factory, hook_server, tmp_path):
    callee = sipp.start_uas("uas_basic.xml", calls=1)
    sm = sipmask_factory(
        [(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])],
        calls={"unknown_policy": "hook"},
        pairing=False,
        extra_toml=f'[hook]\nurl = "{hook_server}"\nsend = "numbers"\ntimeout_s = 2.0\n',
    )
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL, number=WELCOME)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    invite = find(callee.messages(), method="INVITE", request=True)[0]
    assert invite.start.split()[1].startswith(f"sip:{B_REAL}@")
    assert_isolated(caller, callee)
    for form in number_forms(WELCOME):
        assert form not in callee.received_text(), "the unknown caller's number reached the callee"

    csv = tmp_path / "unwelcome.csv"
    csv.write_text(f"SEQUENTIAL\n{UNWELCOME};{A_VIRTUAL};\n")
    rejected = sipp.run_uac("uac_rejected.xml", sm.udp_target, service="unused", name="unwelcome",
                            calls=1, extra=["-inf", str(csv)])
    assert_sipp_ok(rejected)
    finals = [m for m in rejected.messages() if m.is_response and (m.status or 0) >= 200]
    assert [m.status for m in finals] == [404]
    assert [a["caller"] for a in _Hook.asked] == [WELCOME, UNWELCOME]
    assert all(a["virtual"] == A_VIRTUAL for a in _Hook.asked)
