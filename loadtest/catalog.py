"""The scenarios ``python -m loadtest run --scenario NAME`` knows: which SIPp files play the
caller and the callee, and their defaults.

Every caller file reads the numbers from the CSV given with ``-inf`` (``[field0]`` the caller's
real number, ``[field1]`` the virtual number it dials) and names its response-time
measurements (``rtd``): ``setup`` is always the one from the first INVITE to the response that
decides the call (200, or 486 for ``busy``, 180 for ``cancel``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SCENARIO_DIR", "SCENARIOS", "Scenario", "get"]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A caller (UAC) file, the callee (UAS) file that completes it, and defaults."""

    name: str
    uac: str
    uas: str
    summary: str
    hold_ms: int = 0  # SIPp -d: what the caller's <pause/> waits
    busy_pct: float = 0.0  # uas_pbx.xml's busy_pct
    main_rtd: str = "setup"  # the response time shown first

    @property
    def uac_path(self) -> Path:
        return SCENARIO_DIR / self.uac

    @property
    def uas_path(self) -> Path:
        return SCENARIO_DIR / self.uas

    @property
    def uas_takes_settings(self) -> bool:
        """Whether the callee file declares the busy_pct/ring_ms globals (-set)."""
        return self.uas == "uas_pbx.xml"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("basic", "uac_basic.xml", "uas_pbx.xml",
                 "INVITE/100/180/200/ACK, hold (-d), BYE/200: calls per second"),
        Scenario("long", "uac_basic.xml", "uas_pbx.xml",
                 "the basic call held for a while (default 30 s): concurrent calls",
                 hold_ms=30_000),
        Scenario("busy", "uac_busy.xml", "uas_pbx.xml",
                 "the callee answers 486 Busy Here; the caller ACKs", busy_pct=100.0),
        Scenario("cancel", "uac_cancel.xml", "uas_ring.xml",
                 "the caller CANCELs while the callee rings: 200 (CANCEL), 487, ACK",
                 hold_ms=100),
        Scenario("reinvite", "uac_reinvite.xml", "uas_pbx.xml",
                 "call, hold (re-INVITE a=sendonly), resume (a=sendrecv), BYE",
                 hold_ms=100),
        Scenario("prack", "uac_prack.xml", "uas_pbx.xml",
                 "100rel: 183 with SDP sent reliably, PRACK/200, then 200/ACK, BYE"),
        Scenario("message", "uac_message.xml", "uas_pbx.xml",
                 "one out-of-dialog MESSAGE (RFC 3428) answered 200/202",
                 main_rtd="message"),
    )
}


def get(name: str) -> Scenario:
    """The scenario called ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
