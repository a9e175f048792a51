"""Readers for the files SIPp writes during a run, turned into plain Python values.

SIPp 3.6 writes, with the options the runner passes:

- ``-trace_stat -stf FILE -fd 1``: one ``;``-separated line per period (and a final line), with a
  header line naming the columns. Counters come as ``Name(P)`` (this period) and ``Name(C)``
  (cumulative); dates as ``YYYY-MM-DD<TAB>HH:MM:SS.us<TAB>EPOCH``; durations as
  ``HH:MM:SS:uuuuuu``. :func:`read_stat_csv`.
- ``-trace_rtt -rtt_freq N``: ``<scenario>_<pid>_rtt.csv`` with ``Date_ms;response_time_ms;rtd_no``
  (milliseconds since SIPp started, the response time in whole milliseconds, the rtd name given
  in the scenario). :func:`read_rtt_csv`.
- ``-trace_counts``: ``<scenario>_<pid>_counts.csv``, one column per scenario step and counter
  (``4_200_Recv``, ``0_INVITE_Retrans``, ``4_200_Unexp``...). :func:`read_counts_csv`.
- ``-trace_error_codes``: ``<scenario>_<pid>_error_codes.csv``, the status codes of unexpected
  responses, comma-separated, per period. :func:`read_error_codes`.

Each reader tolerates a file that is missing or cut short (SIPp killed mid-write): it returns
what it could read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FAILURE_CAUSES",
    "RttSample",
    "StatFollower",
    "StatRow",
    "StatTable",
    "parse_duration",
    "parse_epoch",
    "read_counts_csv",
    "read_error_codes",
    "read_rtt_csv",
    "read_stat_csv",
    "responses_by_code",
]

#: SIPp's ``Failed...`` counters and the cause names the report uses for them.
FAILURE_CAUSES = {
    "FailedCannotSendMessage": "cannot_send_message",
    "FailedMaxUDPRetrans": "max_udp_retrans",
    "FailedTcpConnect": "tcp_connect",
    "FailedTcpClosed": "tcp_closed",
    "FailedUnexpectedMessage": "unexpected_message",
    "FailedCallRejected": "call_rejected",
    "FailedCmdNotSent": "cmd_not_sent",
    "FailedRegexpDoesntMatch": "regexp_doesnt_match",
    "FailedRegexpShouldntMatch": "regexp_shouldnt_match",
    "FailedRegexpHdrNotFound": "regexp_hdr_not_found",
    "FailedOutboundCongestion": "outbound_congestion",
    "FailedTimeoutOnRecv": "timeout_on_recv",
    "FailedTimeoutOnSend": "timeout_on_send",
    "FailedTestDoesntMatch": "test_doesnt_match",
    "FailedTestShouldntMatch": "test_shouldnt_match",
    "FailedStrcmpDoesntMatch": "strcmp_doesnt_match",
    "FailedStrcmpShouldntMatch": "strcmp_shouldnt_match",
}


def parse_epoch(value: str) -> float | None:
    """SIPp's date ``2026-11-23<TAB>09:43:39.417395<TAB>1795427019.417395`` -> the epoch float."""
    last = value.rsplit("\t", 1)[-1].strip()
    try:
        return float(last)
    except ValueError:
        return None


def parse_duration(value: str) -> float | None:
    """SIPp's ``HH:MM:SS:uuuuuu`` (or ``HH:MM:SS``) -> seconds."""
    parts = value.strip().split(":")
    try:
        if len(parts) == 4:
            h, m, s, us = (int(p) for p in parts)
            return h * 3600 + m * 60 + s + us / 1e6
        if len(parts) == 3:
            h, m, s = (int(p) for p in parts)
            return float(h * 3600 + m * 60 + s)
    except ValueError:
        return None
    return None


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class StatRow:
    """One line of the statistics file: a period report (or the final one)."""

    values: dict[str, str]

    def count(self, name: str, cumulative: bool = True) -> int:
        """Counter ``name`` (e.g. ``SuccessfulCall``), cumulative ``(C)`` or periodic ``(P)``;
        columns without the suffix (``TotalCallCreated``, ``CurrentCall``) are read as is."""
        key = f"{name}({'C' if cumulative else 'P'})"
        raw = self.values.get(key, self.values.get(name, ""))
        number = _number(raw)
        return int(number) if number is not None else 0

    def rate(self, name: str = "CallRate", cumulative: bool = False) -> float:
        raw = self.values.get(f"{name}({'C' if cumulative else 'P'})", "")
        return _number(raw) or 0.0

    @property
    def time(self) -> float | None:
        """Epoch seconds of this report (``CurrentTime``)."""
        return parse_epoch(self.values.get("CurrentTime", ""))

    @property
    def elapsed_s(self) -> float | None:
        """Cumulative elapsed time of the run, seconds."""
        return parse_duration(self.values.get("ElapsedTime(C)", ""))

    @property
    def target_rate(self) -> float | None:
        return _number(self.values.get("TargetRate", ""))

    def failures(self, cumulative: bool = True) -> dict[str, int]:
        """Failed calls by cause (causes with 0 left out)."""
        out = {}
        for column, cause in FAILURE_CAUSES.items():
            n = self.count(column, cumulative)
            if n:
                out[cause] = n
        return out


@dataclass
class StatTable:
    """All rows of a statistics file, oldest first, and the start time."""

    rows: list[StatRow] = field(default_factory=list)

    @property
    def last(self) -> StatRow | None:
        return self.rows[-1] if self.rows else None

    @property
    def start(self) -> float | None:
        """Epoch seconds when SIPp started (``StartTime``)."""
        if not self.rows:
            return None
        return parse_epoch(self.rows[0].values.get("StartTime", ""))


def _split_rows(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        if line.strip():
            yield line.rstrip(";").split(";")


def read_stat_csv(path: str | Path) -> StatTable:
    """Read a ``-trace_stat`` file. Rows with fewer fields than the header (a line SIPp was
    still writing) are dropped."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return StatTable()
    rows = list(_split_rows(text))
    if not rows:
        return StatTable()
    header, body = rows[0], rows[1:]
    table = StatTable()
    for fields in body:
        if len(fields) < len(header):
            continue
        table.rows.append(StatRow(dict(zip(header, fields))))
    return table


class StatFollower:
    """Follows a statistics file SIPp is still writing: each :meth:`poll` reads only what was
    added since the last one, and keeps the last two complete rows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = ""
        self._header: list[str] | None = None
        self.previous: StatRow | None = None
        self.last: StatRow | None = None
        self._rate = 0.0

    def poll(self) -> StatRow | None:
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return self.last
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # an unfinished line waits for the next poll
        for line in lines:
            if not line.strip():
                continue
            fields = line.rstrip(";").split(";")
            if self._header is None:
                self._header = fields
            elif len(fields) >= len(self._header):
                self.previous, self.last = self.last, StatRow(dict(zip(self._header, fields)))
        return self.last

    def recent_rate(self, name: str = "SuccessfulCall") -> float:
        """Calls per second of ``name`` between the last two rows at least 0.5 s apart (SIPp's
        final row follows the last period within milliseconds)."""
        if self.previous is not None and self.last is not None:
            t0, t1 = self.previous.time, self.last.time
            if t0 is not None and t1 is not None and t1 - t0 >= 0.5:
                self._rate = (self.last.count(name) - self.previous.count(name)) / (t1 - t0)
        return self._rate


@dataclass(frozen=True, slots=True)
class RttSample:
    """One response time: when (ms since SIPp started), how long (ms) and which rtd."""

    at_ms: float
    rtt_ms: float
    rtd: str


def read_rtt_csv(path: str | Path) -> list[RttSample]:
    """Read a ``-trace_rtt`` file (header ``Date_ms;response_time_ms;rtd_no``)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    samples = []
    for fields in _split_rows(text):
        if len(fields) < 3:
            continue
        at, rtt = _number(fields[0]), _number(fields[1])
        if at is None or rtt is None:
            continue  # the header, or a torn line
        samples.append(RttSample(at, rtt, fields[2].strip()))
    return samples


def read_counts_csv(path: str | Path) -> dict[str, int]:
    """The last complete line of a ``-trace_counts`` file: ``{"4_200_Recv": 50, ...}``."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return {}
    rows = list(_split_rows(text))
    if len(rows) < 2:
        return {}
    header = rows[0]
    for fields in reversed(rows[1:]):
        if len(fields) >= len(header):
            out = {}
            for name, value in zip(header[2:], fields[2:]):
                number = _number(value)
                if number is not None:
                    out[name] = int(number)
            return out
    return {}


def responses_by_code(counts: dict[str, int]) -> dict[str, int]:
    """Responses the scenario expected and received, summed by status code:
    ``{"4_486_Recv": 20, "2_180_Recv": 3}`` -> ``{"180": 3, "486": 20}``."""
    out: Counter[str] = Counter()
    for name, value in counts.items():
        step, _, rest = name.partition("_")
        code, _, kind = rest.rpartition("_")
        if kind == "Recv" and step.isdigit() and code.isdigit() and len(code) == 3 and value:
            out[code] += value
    return dict(sorted(out.items()))


def read_error_codes(path: str | Path) -> dict[str, int]:
    """Status codes of unexpected responses (``-trace_error_codes``), counted: ``{"503": 7}``."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return {}
    return dict(sorted(_count_codes(_split_rows(text)).items()))


def _count_codes(rows: Iterable[list[str]]) -> Counter[str]:
    codes: Counter[str] = Counter()
    for fields in rows:
        # date;elapsed;code,code,...  (the code list may be empty)
        for value in fields[2:]:
            for code in value.split(","):
                code = code.strip()
                if code.isdigit():
                    codes[code] += 1
    return codes
