"""The ``[api]`` config section and ``SIPMASK_API_LISTEN``."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipmask.toml"
    path.write_text(text)
    return path


def test_defaults_enable_the_api_on_loopback() -> None:
    api = load_config(None, env={}).api
    assert (api.enabled, api.host, api.port, api.listen) == (True, "127.0.0.1", 8080,
                                                               "127.0.0.1:8080")


def test_listen_enabled_and_region(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[api]\nlisten = "[::1]:9000"\nenabled = false\n'
                                      'default_region = "gb"\n'), env={})
    assert (cfg.api.host, cfg.api.port, cfg.api.enabled) == ("::1", 9000, False)
    assert cfg.api.listen == "[::1]:9000" and cfg.api.default_region == "GB"


@pytest.mark.parametrize("text, key", [
    ('[api]\nlisten = "localhost"\n', "api.listen"),
    ('[api]\nlisten = "127.0.0.1:99999"\n', "api.listen"),
    ('[api]\nlisten = 8080\n', "api.listen"),
    ('[api]\nenabled = "yes"\n', "api.enabled"),
    ('[api]\ndefault_region = "XX"\n', "api.default_region"),
    ('[api]\nlistn = "127.0.0.1:1"\n', "api.listn"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.key == key


def test_environment_overrides(tmp_path: Path) -> None:
    assert load_config(None, env={"SIPMASK_API_LISTEN": "0.0.0.0:8081"}).api.port == 8081
    assert load_config(None, env={"SIPMASK_API_LISTEN": "off"}).api.enabled is False
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"SIPMASK_API_LISTEN": "nope"})
    assert info.value.key == "SIPMASK_API_LISTEN"
