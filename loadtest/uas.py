"""A tiny UAS built on sipmask's own SIP stack: answers INVITE with 180 + 200 (echoing an SDP
answer), BYE and OPTIONS with 200. Used to prove the stack against SIPp's built-in ``uac``
scenario, and by load testers as a stand-in callee.

    python -m loadtest.uas --listen udp:127.0.0.1:5080 --listen tcp:127.0.0.1:5080
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from proxy.sip.ids import SecretIds
from proxy.sip.message import build_response
from proxy.sip.transaction import (
    RequestReceived,
    ServerTransaction,
    TimerConfig,
    TransactionLayer,
)
from proxy.transport import SipTransports, install_event_loop_policy
from proxy.transport.stack import SipStack

_SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class TinyUas:
    """Transaction user that answers everything at once."""

    def __init__(self, layer: TransactionLayer, contact: dict[str, str]) -> None:
        self.layer = layer
        self.ids = SecretIds(os.urandom)
        self.contact = contact
        self.answered = 0

    def handle(self, event: object, now: float) -> None:
        if not isinstance(event, RequestReceived) or event.transaction is None:
            return  # ACKs for 2xx and responses need nothing from a UAS this simple
        txn: ServerTransaction = event.transaction
        request = event.request
        method = request.method
        if method == "INVITE":
            tag = self.ids.tag()
            contact = [("Contact", self.contact[event.source.transport])]
            self.layer.send_response(txn, build_response(request, 180, None, to_tag=tag, extra=contact), now)
            host = self.contact[event.source.transport].split("@", 1)[1].split(":", 1)[0]
            body = _SDP.format(ip=host).encode()
            extra = contact + [("Content-Type", "application/sdp")]
            self.layer.send_response(txn, build_response(request, 200, None, to_tag=tag, extra=extra, body=body), now)
            self.answered += 1
        elif method in ("BYE", "OPTIONS", "CANCEL", "UPDATE", "INFO", "PRACK"):
            self.layer.send_response(txn, build_response(request, 200, None, to_tag=self.ids.tag()), now)
        else:
            self.layer.send_response(txn, build_response(request, 405, None, to_tag=self.ids.tag()), now)

    def next_deadline(self) -> float | None:
        return None

    def handle_timers(self, now: float) -> None:
        return None


async def serve(listen: list[str]) -> None:
    """Listen on every ``transport:host:port`` and answer until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    layer = TransactionLayer(TimerConfig(), SecretIds(os.urandom))
    box: list[SipStack] = []
    transports = SipTransports(lambda m, s, delay=0.0: box[0].on_message(m, s, delay),
                               on_send_error=lambda d: box[0].on_send_error(d))
    stack = SipStack(layer, transports.send, loop)
    box.append(stack)
    contact: dict[str, str] = {}
    for spec in listen:
        transport, rest = spec.split(":", 1)
        host, port = rest.rsplit(":", 1)
        bound_host, bound_port = await transports.listen(transport, host, int(port))
        suffix = "" if transport == "udp" else f";transport={transport}"
        contact.setdefault(transport, f"<sip:uas@{bound_host}:{bound_port}{suffix}>")
    stack.attach(TinyUas(layer, contact))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    stack.close()
    await transports.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", action="append", required=True, help="transport:host:port (repeatable)")
    args = parser.parse_args()
    install_event_loop_policy()
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
