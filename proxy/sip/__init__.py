"""Sans-IO SIP: messages, parsing, URIs, headers, SDP helpers (transactions and dialogs below)."""

# --- message layer: errors, uri, headers, message, parser, sdp ---------------------------------
from .errors import SerialiseError, SipParseError
from .headers import COMPACT_FORMS, CSeq, Via, header_key, split_list
from .message import REASONS, Headers, Message, Request, Response, build_response
from .parser import KEEPALIVE, KeepAlive, StreamFramer, parse_message
from .sdp import SdpError, SdpWhitelist, rebuild_sdp, sdp_has_media
from .uri import NameAddr, SipUri

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "Headers",
    "KEEPALIVE",
    "KeepAlive",
    "Message",
    "NameAddr",
    "REASONS",
    "Request",
    "Response",
    "SerialiseError",
    "SipParseError",
    "SdpError",
    "SdpWhitelist",
    "SipUri",
    "StreamFramer",
    "Via",
    "build_response",
    "header_key",
    "parse_message",
    "rebuild_sdp",
    "sdp_has_media",
    "split_list",
]
# --- end of message layer ----------------------------------------------------------------------
