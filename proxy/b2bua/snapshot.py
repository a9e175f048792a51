"""Established calls as records a store can keep, so that calls outlive the worker that bridged
them: a restarted worker reloads its own, a sibling takes over a dead worker's (the asyncio side
is ``proxy.cluster``; this module is sans-IO).

A record holds what routing in-dialog requests and ending both legs need, and nothing else: each
leg's dialog (§12: Call-ID, tags, URIs, CSeqs, remote target, route set), where the peer is,
the user part of our Contact, and the call's bookkeeping (tokens, times on the wall clock, the
session interval). It names real numbers (a leg's remote URI and target are the party's own),
so the store keeps it encrypted (``proxy.cluster``) and it never reaches a log.

:class:`DialogJournal` is what the B2BUA writes to on the call path: it only remembers which
calls changed; the flusher turns them into records off the call path, so a call that ends
before the next flush (most short calls) costs one dict insertion and one removal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..pairing.model import Match
from ..sip.dialog import Dialog, DialogState
from ..sip.transaction import Address
from .call import CONFIRMED, Call, Leg

if TYPE_CHECKING:
    from .base import B2buaBase

__all__ = ["RECORD_VERSION", "DialogJournal", "restore", "snapshot"]

#: bumped when the record's fields change meaning; older records are ended, not guessed at
RECORD_VERSION = 1


class DialogJournal:
    """Which established calls changed since the last flush, and which ended after one was
    written. ``changed``/``ended`` run on the call path (a dict operation each)."""

    __slots__ = ("dirty", "written", "deleted")

    def __init__(self) -> None:
        self.dirty: dict[str, Call] = {}
        #: calls whose record the store holds
        self.written: set[str] = set()
        self.deleted: set[str] = set()

    def changed(self, call: Call) -> None:
        """The call was confirmed, or a leg's dialog changed (target refresh)."""
        self.dirty[call.id] = call

    def ended(self, call: Call) -> None:
        """The call ended: drop it, and its record if one was written."""
        self.dirty.pop(call.id, None)
        if call.id in self.written:
            self.written.discard(call.id)
            self.deleted.add(call.id)

    def take(self, wall: Any, media: Any = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """(records to write by call key, call keys to delete) since the last ``take``;
        ``wall(now)`` maps the B2BUA's clock to the wall clock; ``media`` (the relay, if any)
        says which rtpengine holds an anchored call's session."""
        records = {}
        for key, call in self.dirty.items():
            if call.state is CONFIRMED:
                records[key] = snapshot(call, wall, media)
                self.written.add(key)
        self.dirty = {}
        deleted = list(self.deleted)
        self.deleted = set()
        return records, deleted

    def adopted(self, call: Call) -> None:
        """A call restored from a record: the store holds it (under this worker once claimed)."""
        self.written.add(call.id)


def snapshot(call: Call, wall: Any, media: Any = None) -> dict[str, Any]:
    """The record of an established call (see the module docstring); ``media``, the relay,
    names the rtpengine holding an anchored call's session."""
    answered = call.answered_at if call.answered_at is not None else call.started_at
    record = {
        "v": RECORD_VERSION,
        "id": call.id,
        "session": call.pairing_id,
        "present": call.match.present if call.match is not None else "",
        "caller_token": call.caller_token,
        "callee_token": call.callee_token,
        "call_id_token": call.call_id_token,
        "started_at": wall(call.started_at),
        "answered_at": wall(answered),
        "session_interval": call.session_interval,
        "own_timer": call.own_timer,
        "code": call.code,
        "a": _leg(call.a),
        "b": _leg(call.b),
    }
    if call.media_key and media is not None:
        record["media"] = [call.media_key, media.holder(call.media_key)]
    return record


def _leg(leg: Leg) -> dict[str, Any]:
    dialog = leg.dialog
    assert dialog is not None
    return {
        "transport": leg.transport,
        "source": [leg.source.transport, leg.source.host, leg.source.port],
        "user": _contact_user(leg.contact),
        "call_id": dialog.call_id,
        "local_tag": dialog.local_tag,
        "remote_tag": dialog.remote_tag,
        "local_uri": dialog.local_uri,
        "remote_uri": dialog.remote_uri,
        "local_cseq": dialog.local_cseq,
        "remote_cseq": dialog.remote_cseq,
        "remote_target": dialog.remote_target,
        "route_set": list(dialog.route_set),
        "secure": dialog.secure,
    }


def _contact_user(contact: str) -> str:
    """The user part of our own Contact (``<sip:USER@host:port;...>``, ``_render_contact``)."""
    start = contact.find(":") + 1
    at = contact.find("@", start)
    return contact[start:at] if start > 0 and at > 0 else "sipmask"


#: added to a restored leg's local CSeq: requests we sent after the last flush (refreshes,
#: relayed INFO...) used numbers the record does not know; §12.2.2 only asks for higher ones
CSEQ_MARGIN = 1000


def restore(b2bua: B2buaBase, record: dict[str, Any], now: float, wall_now: float) -> Call:
    """Rebuild an established call from its record and register its legs with the B2BUA.
    ``wall_now`` is the wall clock at ``now``. Raises ``KeyError``/``ValueError``/``TypeError``
    on a record it cannot use (the caller ends what it can of such a record)."""
    if record.get("v") != RECORD_VERSION:
        raise ValueError(f"record version {record.get('v')!r}")
    offset = now - wall_now  # wall -> this process's clock
    match = Match(session_id=record["session"], callee="", present=record["present"])
    call = Call.adopted(str(record["id"]), match, float(record["started_at"]) + offset, b2bua.log)
    call.answered_at = float(record["answered_at"]) + offset
    call.caller_token = str(record["caller_token"])
    call.callee_token = str(record["callee_token"])
    call.call_id_token = str(record["call_id_token"])
    call.session_interval = int(record["session_interval"])
    call.own_timer = bool(record.get("own_timer", False))
    call.code = int(record["code"])
    media = record.get("media")
    if media and b2bua.media is not None:
        key, holder = str(media[0]), media[1]
        call.media_key = key
        if holder:
            b2bua.media.adopt(key, str(holder))
    call.a = _restore_leg(b2bua, call, "a", record["a"])
    call.b = _restore_leg(b2bua, call, "b", record["b"])
    return call


def _restore_leg(b2bua: B2buaBase, call: Call, name: str, raw: dict[str, Any]) -> Leg:
    transport = str(raw["transport"])
    s_transport, s_host, s_port = raw["source"]
    source = Address(str(s_transport), str(s_host), int(s_port))
    remote_cseq = raw["remote_cseq"]
    dialog = Dialog(
        str(raw["call_id"]), str(raw["local_tag"]), str(raw["remote_tag"]),
        str(raw["local_uri"]), str(raw["remote_uri"]),
        int(raw["local_cseq"]) + CSEQ_MARGIN,
        int(remote_cseq) if remote_cseq is not None else None,
        str(raw["remote_target"]), [str(r) for r in raw["route_set"]],
        bool(raw["secure"]), DialogState.CONFIRMED,
    )
    leg = Leg(call, name, transport, source, dialog.call_id, dialog.local_tag)
    leg.dialog = dialog
    leg.contact = b2bua.contact_for(transport, str(raw["user"]))
    return leg
