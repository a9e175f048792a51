"""The key check shared by the config and the rules file: keys come from dataclass fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.b2bua.policy import HeaderPolicy, Rules, RulesError, SdpPolicy, load_rules
from proxy.config import (
    ApiConfig,
    Config,
    ConfigError,
    LocatedError,
    LogConfig,
    load_config,
)
from proxy.config.fields import check_keys, table_keys


def test_keys_are_the_fields_with_their_toml_names() -> None:
    assert table_keys(LogConfig) == ("level", "format")
    assert table_keys(ApiConfig) == ("enabled", "listen", "default_region", "rate_limit_per_token")  # host+port: listen
    assert "source" not in table_keys(Config) and "rules_file" in table_keys(Config)
    assert table_keys(HeaderPolicy) == ("pass", "drop", "pass_x_headers", "pass_user_agent")
    assert table_keys(SdpPolicy) == ("sanitise", "origin_username", "session_name", "lines", "attributes")
    assert table_keys(Rules) == ("headers", "sdp", "bodies")


def test_check_keys_suggests_or_lists() -> None:
    with pytest.raises(ConfigError) as info:
        check_keys("f.toml", {"levl": 1}, ("level", "format"), "log", ConfigError)
    assert str(info.value) == 'f.toml: log.levl: unknown key; did you mean "level"?'
    with pytest.raises(RulesError) as rules_info:
        check_keys("r.toml", {"zzz": 1}, ("headers", "sdp"), "", RulesError, listing="known")
    assert str(rules_info.value) == "r.toml: zzz: unknown key; known: headers, sdp"
    check_keys("f.toml", {"level": 1}, ("level", "format"), "log", ConfigError)


def test_both_files_raise_their_own_located_error(tmp_path: Path) -> None:
    config = tmp_path / "sipmask.toml"
    config.write_text("[api]\nlisten_on = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    assert isinstance(info.value, LocatedError) and not isinstance(info.value, RulesError)
    assert (info.value.key, info.value.problem) == ("api.listen_on",
                                                    'unknown key; did you mean "listen"?')
    rules = tmp_path / "rules.toml"
    rules.write_text("[sdp]\nsanitize = true\n", encoding="utf-8")
    with pytest.raises(RulesError) as rules_info:
        load_rules(rules)
    assert isinstance(rules_info.value, LocatedError)
    assert not isinstance(rules_info.value, ConfigError)
    assert rules_info.value.key == "sdp.sanitize" and "did you mean \"sanitise\"?" in str(
        rules_info.value)
