"""Out-of-dialog MESSAGE (RFC 3428, pager mode), masked through the same sessions as calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sip.message import Request, Response, build_response
from ..sip.transaction import Address, ClientTransaction, ServerTransaction
from .base import B2buaBase, gateway_address, map_final, peer_reason
from .call import TransactionData

if TYPE_CHECKING:
    from .b2bua import B2bua


class MessageFlow(B2buaBase):
    """A MESSAGE from a trunk relayed to the callee, and its final answer relayed back."""

    def _new_message(self, request: Request, source: Address, txn: ServerTransaction, now: float) -> None:
        """An out-of-dialog MESSAGE (RFC 3428, pager mode) masked through the same sessions as
        calls: same trunk check, identity, uniform rejection and routes; the copy sent on is a
        new transaction with virtual numbers only and the whitelisted headers; the final answer
        comes back without the callee's headers. The body (the text) is the users' own content
        and passes unchanged."""
        cfg = self.calls_cfg
        trunk = self._trunk(source.host)
        if trunk is None:
            self._count("untrusted")
            self._reply(txn, cfg.untrusted_code, None, now)
            return
        caller, dialed = self._identities(request, trunk)
        match = None
        if caller is not None and dialed is not None:
            match = self.pairings.lookup(caller, dialed, self.wall_clock(now))
        if match is None:
            self._count("message_no_pairing")
            self._reply(txn, cfg.unknown_code, cfg.unknown_reason, now)
            return
        route = self.config.route_for(match.callee)
        if route is None or not route.gateways:
            self._reply(txn, 503, None, now)
            return
        gw = route.gateways[0]
        out = self._outbound_request("MESSAGE", match, gw, dialed or "", self.ids.tag(), self.ids.call_id(), 1, 70)
        self._copy_headers(request, out)
        out.body = request.body
        client = self.layer.send_request(out, gateway_address(gw), now)
        client.tu_data = RelayedMessage(txn, self.ids.tag())
        self.pairings.touch(match.session_id, self.wall_clock(now))
        self._count("messages")
        self.log.info("message.relayed", pairing_id=match.session_id, trunk=trunk.name)

    def message_response(self, msg: RelayedMessage, response: Response, now: float) -> None:
        """The callee side's answer: the final one goes back to the sender, without the
        callee's headers beyond the policy's."""
        status = response.status
        server = msg.server
        if status < 200 or (server.last_response is not None and server.last_response.status >= 200):
            return
        status = map_final(status)  # never hand the callee's contacts or realm over
        reason = None if status != response.status else peer_reason(response.reason)
        out = build_response(server.request, status, reason, to_tag=msg.a_tag)
        self._copy_headers(response, out)
        self.layer.send_response(server, out, now)

    def message_failed(self, msg: RelayedMessage, now: float) -> None:
        """The callee's side never answered: 408 to the sender (§8.1.3.1)."""
        server = msg.server
        if server.last_response is None or server.last_response.status < 200:
            self._reply(server, 408, None, now, to_tag=msg.a_tag)


class RelayedMessage(TransactionData):
    """tu_data of a client transaction relaying an out-of-dialog MESSAGE."""

    __slots__ = ("server", "a_tag")

    def __init__(self, server: ServerTransaction, a_tag: str) -> None:
        self.server = server
        self.a_tag = a_tag

    def on_response(self, b2bua: B2bua, response: Response, txn: ClientTransaction, now: float) -> None:
        """The callee's side answered the relayed MESSAGE."""
        b2bua.message_response(self, response, now)

    def on_timeout(self, b2bua: B2bua, txn: ClientTransaction | ServerTransaction, timer: str,
                   now: float) -> None:
        """The callee's side never answered it."""
        b2bua.message_failed(self, now)
