"""``[media]`` (proxy/config/sections.py ``parse_media``): the defaults, the rtpengine list with
weights, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, MediaConfig, RtpengineSpec, load_config


def load(tmp_path: Path, text: str) -> MediaConfig:
    path = tmp_path / "sipmask.toml"
    path.write_text(text)
    return load_config(path, env={}).media


def test_off_by_default(tmp_path: Path) -> None:
    media = load(tmp_path, "")
    assert media == MediaConfig() and not media.enabled
    assert media.on_unavailable == "reject"


def test_rtpengines_with_weights(tmp_path: Path) -> None:
    media = load(tmp_path, '[media]\nmode = "rtpengine"\n'
                           'rtpengines = ["127.0.0.1:2223", "[::1]:2224;weight=3"]\n'
                           'on_unavailable = "signalling-only"\nflags = ["SIP source address"]\n'
                           "timeout_s = 0.2\nretries = 0\ndown_s = 0\nretry_after_s = 3\n")
    assert media.enabled
    assert media.rtpengines == (RtpengineSpec("127.0.0.1", 2223, 1), RtpengineSpec("::1", 2224, 3))
    assert (media.on_unavailable, media.flags) == ("signalling-only", ("SIP source address",))
    assert (media.timeout_s, media.retries, media.down_s, media.retry_after_s) == (0.2, 0, 0.0, 3)


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ('mode = "kernel"\n', "media.mode", "off, rtpengine"),
    ('mode = "rtpengine"\n', "media.rtpengines", "at least one"),
    ('rtpengines = ["localhost"]\n', "media.rtpengines[0]", '"HOST:PORT"'),
    ('rtpengines = ["127.0.0.1:2223;weight=0"]\n', "media.rtpengines[0]", "weight of 1..1000"),
    ('rtpengines = ["127.0.0.1:2223;prio=2"]\n', "media.rtpengines[0]", "weight of 1..1000"),
    ("rtpengines = [2223]\n", "media.rtpengines[0]", '"HOST:PORT"'),
    ("timeout_s = 0\n", "media.timeout_s", ""),
    ("retries = 11\n", "media.retries", ""),
    ('on_unavailable = "drop"\n', "media.on_unavailable", "reject, signalling-only"),
    ("flags = \"x\"\n", "media.flags", "expected a list"),
    ("rtpengine = []\n", "media.rtpengine", "rtpengines"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[media]\n" + text)
    assert info.value.key == key and fragment in str(info.value)
