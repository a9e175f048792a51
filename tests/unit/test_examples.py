"""examples/: the systemd unit (systemd-analyze verify where installed, and its hardening
keys), the Asterisk and FreeSWITCH trunks (structure only: neither PBX is in Debian 12 main),
and the sipmask side of them in examples/README.md (loaded as a real config)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from proxy.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def unit_keys(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"not a key=value line in a section: {raw!r}"
        sections[section][key.strip()].append(value.strip())
    return sections


def test_the_systemd_unit_is_hardened() -> None:
    unit = unit_keys((EXAMPLES / "systemd" / "sipmask.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"] == ["/opt/sipmask/bin/sipmask -c /etc/sipmask/sipmask.toml run"]
    for key, value in (("DynamicUser", "yes"), ("NoNewPrivileges", "yes"),
                       ("ProtectSystem", "strict"), ("StateDirectory", "sipmask"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("UMask", "0077")):
        assert service[key] == [value], key
    # SIP listens on 5060: no capability at all, none in the bounding set
    assert service["AmbientCapabilities"] == [""] and service["CapabilityBoundingSet"] == [""]
    assert service["Environment"] == [
        "SIPMASK_STORE_PATH=/var/lib/sipmask/sipmask.db", "SIPMASK_LOG_FORMAT=json"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """With the ExecStart pointed at this interpreter's sipmask (verify checks it exists).
    Where systemd-analyze is not installed, the key check above is what remains."""
    analyze = shutil.which("systemd-analyze")
    text = (EXAMPLES / "systemd" / "sipmask.service").read_text()
    sipmask = Path(sys.executable).with_name("sipmask")
    unit = tmp_path / "sipmask.service"
    unit.write_text(text.replace("/opt/sipmask/bin/sipmask", str(sipmask)))
    if analyze is None or not sipmask.exists():
        assert "ExecStart=/opt/sipmask/bin/sipmask" in text
        return
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60)
    # verify exits 0 even for unknown keys: any line about the file is a finding
    findings = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and not findings, done.stdout + done.stderr
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    done = subprocess.run([analyze, "verify", "--man=no", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert "Unknown key" in done.stdout + done.stderr  # the check above can fail


def pjsip_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """Asterisk's config format: ``[name]`` sections (a name may repeat, one per type) of
    ``key = value`` lines, ``;`` comments."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if re.fullmatch(r"\[[\w-]+\]", line):
            sections.append((line[1:-1], {}))
            continue
        key, sep, value = line.partition("=")
        assert sep and sections, f"not a key = value line in a section: {raw!r}"
        sections[-1][1][key.strip()] = value.strip()
    return sections


def test_the_asterisk_trunk_is_consistent() -> None:
    sections = pjsip_sections((EXAMPLES / "asterisk" / "pjsip.conf").read_text())
    by_type = {(name, body["type"]): body for name, body in sections}
    endpoint = by_type[("sipmask", "endpoint")]
    assert ("transport-udp", "transport") in by_type
    assert (endpoint["transport"], "transport") in by_type
    assert (endpoint["aors"], "aor") in by_type
    assert by_type[("sipmask", "identify")]["endpoint"] == "sipmask"
    aor = by_type[("sipmask", "aor")]
    assert aor["contact"] == "sip:192.0.2.10:5060"
    assert by_type[("sipmask", "identify")]["match"] == "192.0.2.10"
    assert endpoint["direct_media"] == "no" and endpoint["context"] == "from-sipmask"


def test_the_freeswitch_gateway_and_dialplan_are_well_formed() -> None:
    gateway = ET.parse(EXAMPLES / "freeswitch" / "sipmask.xml").getroot()
    (gw,) = gateway.findall("gateway")
    params = {p.get("name"): p.get("value") for p in gw.findall("param")}
    assert gw.get("name") == "sipmask"
    assert params["proxy"] == "192.0.2.10:5060" and params["register"] == "false"
    assert params["caller-id-in-from"] == "true"
    plan = ET.parse(EXAMPLES / "freeswitch" / "dialplan-public-sipmask.xml").getroot()
    conditions = plan.findall("extension/condition")
    assert [c.get("field") for c in conditions] == ["network_addr", "destination_number"]
    assert re.match(conditions[1].get("expression") or "", "+15559990001")


def test_the_sipmask_side_in_the_examples_readme_loads(tmp_path: Path) -> None:
    text = (EXAMPLES / "README.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    path = tmp_path / "sipmask.toml"
    path.write_text(block + f'\n[store]\npath = "{tmp_path / "db"}"\n'
                            f'key_file = "{tmp_path / "key"}"\n')
    config = load_config(path, env={})
    assert [t.name for t in config.trunks] == ["pbx"]
    assert config.route_for("+15559990001") is not None
