"""Configuration: defaults, a full file, validation errors naming file and key, env."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from proxy.config import (
    DEFAULT_RULES_FILE,
    CallsConfig,
    Config,
    ConfigError,
    Gateway,
    ListenSpec,
    LogConfig,
    RouteConfig,
    SipConfig,
    StoreConfig,
    TrunkConfig,
    load_config,
)

FULL = """
rules_file = "my-rules.toml"

[sip]
listen = ["udp:0.0.0.0:5060", "tcp:[::1]:5060", "tls:0.0.0.0:5061"]
advertise_host = "sbc.example.com"
t1 = 0.25
t2 = 4
t4 = 5.0
tls_cert = "certs/sipmask.pem"
tls_key = "/etc/sipmask/key.pem"
tcp_idle_timeout_s = 120
max_message_size = 16384

[[trunks]]
name = "carrier-a"
sources = ["203.0.113.0/24", "2001:db8::/32"]
trust_pai = true
default_region = "gb"

[[trunks]]
name = "pbx"
sources = ["10.1.2.3"]

[[routes]]
prefix = "+44"
gateways = ["udp:203.0.113.10:5060", "tcp:carrier-a.example.net:5060"]
name = "uk"

[[routes]]
prefix = "+447"
gateways = ["tls:[2001:db8::10]:5061"]

[[routes]]
prefix = ""
gateways = ["udp:10.1.2.3:5060"]
name = "default"

[calls]
unknown_code = 480
unknown_reason = "Temporarily Unavailable"
untrusted_code = 403
ring_timeout_s = 45
max_duration_s = 3600
session_expires_s = 1800
min_se_s = 90
refer = "reject"
max_calls = 500

[store]
backend = "sqlite"
path = "data/pairings.db"
key_file = "/etc/sipmask/sipmask.key"
poll_interval_s = 1

[log]
level = "DEBUG"
format = "json"
"""


def write(tmp_path: Path, text: str, name: str = "sipmask.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file() -> None:
    config = load_config(env={})
    assert config == Config()
    assert config.sip.listen == (ListenSpec("udp", "127.0.0.1", 5060),)
    assert config.store == StoreConfig()
    assert config.store.path == "sipmask.db"
    assert config.calls == CallsConfig() and config.log == LogConfig()
    assert config.routes == ()
    assert [t.name for t in config.trunks] == ["loopback"]
    assert config.trunks[0].trust_pai is False
    assert config.rules_file == DEFAULT_RULES_FILE and DEFAULT_RULES_FILE.is_file()
    assert config.source is None
    assert config.trunk_for("127.0.0.1") is config.trunks[0]
    assert config.trunk_for("::1") is config.trunks[0]
    assert config.trunk_for("192.0.2.1") is None


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_config(path, env={})
    assert config.source == path.resolve()
    assert config.sip == SipConfig()


def test_full_example(tmp_path: Path) -> None:
    (tmp_path / "my-rules.toml").write_text("", encoding="utf-8")
    config = load_config(write(tmp_path, FULL), env={})
    assert config.sip.listen == (
        ListenSpec("udp", "0.0.0.0", 5060),
        ListenSpec("tcp", "::1", 5060),
        ListenSpec("tls", "0.0.0.0", 5061),
    )
    assert str(config.sip.listen[1]) == "tcp:[::1]:5060"
    assert config.sip.advertise_host == "sbc.example.com"
    assert (config.sip.t1, config.sip.t2, config.sip.t4) == (0.25, 4.0, 5.0)
    assert config.sip.tls_cert == str(tmp_path / "certs/sipmask.pem")  # relative to the file
    assert config.sip.tls_key == "/etc/sipmask/key.pem"
    assert config.sip.tcp_idle_timeout_s == 120.0 and config.sip.max_message_size == 16384
    carrier, pbx = config.trunks
    assert carrier == TrunkConfig(
        "carrier-a",
        (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32")),
        trust_pai=True,
        default_region="GB",
    )
    assert pbx.sources == (ipaddress.ip_network("10.1.2.3/32"),) and pbx.default_region == "US"
    assert config.routes[0] == RouteConfig(
        "+44",
        (Gateway("udp", "203.0.113.10", 5060), Gateway("tcp", "carrier-a.example.net", 5060)),
        "uk",
    )
    assert config.routes[1].gateways == (Gateway("tls", "2001:db8::10", 5061),)
    assert config.calls == CallsConfig(480, "Temporarily Unavailable", 403, 45.0, 3600.0,
                                       1800, 90, "reject", 500)
    assert config.store.path == str(tmp_path / "data/pairings.db")
    assert config.store.key_file == "/etc/sipmask/sipmask.key"
    assert config.store.poll_interval_s == 1.0
    assert config.log == LogConfig("debug", "json")
    assert config.rules_file == tmp_path / "my-rules.toml"


def test_trunk_for(tmp_path: Path) -> None:
    (tmp_path / "my-rules.toml").write_text("", encoding="utf-8")
    config = load_config(write(tmp_path, FULL), env={})
    assert config.trunk_for("203.0.113.77").name == "carrier-a"  # type: ignore[union-attr]
    assert config.trunk_for("2001:db8::5").name == "carrier-a"  # type: ignore[union-attr]
    assert config.trunk_for("10.1.2.3").name == "pbx"  # type: ignore[union-attr]
    assert config.trunk_for("::ffff:10.1.2.3").name == "pbx"  # type: ignore[union-attr]
    assert config.trunk_for("10.1.2.4") is None
    assert config.trunk_for("127.0.0.1") is None  # configured trunks replace the default
    assert config.trunk_for("not-an-ip") is None


def test_route_for_longest_prefix(tmp_path: Path) -> None:
    (tmp_path / "my-rules.toml").write_text("", encoding="utf-8")
    config = load_config(write(tmp_path, FULL), env={})
    assert config.route_for("+447700900123").prefix == "+447"  # type: ignore[union-attr]
    assert config.route_for("+442079460958").name == "uk"  # type: ignore[union-attr]
    assert config.route_for("442079460958").name == "uk"  # type: ignore[union-attr]
    assert config.route_for("+15551230001").name == "default"  # type: ignore[union-attr]
    no_default = Config(routes=(RouteConfig("1", (Gateway("udp", "h", 5060),)),))
    assert no_default.route_for("+15551230001") is not None
    assert no_default.route_for("+44") is None


# (toml text, key named in the error, fragment of the expected message)
ERRORS = [
    ('[[routes]]\nprefix = "1"\ngateways = ["udp:a:1", "foo"]\n', "routes[0].gateways[1]",
     'expected "udp|tcp|tls:HOST:PORT", got "foo"'),
    ('[sip]\nlisten = ["sctp:1.2.3.4:5060"]\n', "sip.listen[0]", "udp|tcp|tls"),
    ('[sip]\nlisten = ["udp:1.2.3.4:70000"]\n', "sip.listen[0]", "port"),
    ('[sip]\nlisten = ["udp:1.2.3.4"]\n', "sip.listen[0]", "missing port"),
    ('[sip]\nlisten = ["udp:::1:5060"]\n', "sip.listen[0]", "brackets"),
    ('[sip]\nlisten = "udp:1.2.3.4:5060"\n', "sip.listen", "expected a list"),
    ('[sip]\nlisten = []\n', "sip.listen", "at least one"),
    ('[sip]\nlisten = ["tls:0.0.0.0:5061"]\n', "sip.tls_cert", "required when listening on tls"),
    ('[sip]\nlisten = ["tls:0.0.0.0:5061"]\ntls_cert = "c.pem"\n', "sip.tls_key", "required"),
    ("[sip]\nt1 = 0\n", "sip.t1", "positive"),
    ("[sip]\nt2 = -1\n", "sip.t2", "positive"),
    ('[sip]\nt4 = "5"\n', "sip.t4", "positive number"),
    ("[sip]\nt1 = 5.0\nt2 = 4.0\n", "sip.t1", "t1 < t2"),
    ("[sip]\nmax_message_size = 10\n", "sip.max_message_size", "between"),
    ('[sip]\nadvertise_host = "bad host!"\n', "sip.advertise_host", "host name or IP"),
    ('[[trunks]]\nname = "a"\nsources = ["10.0.0.0/33"]\n', "trunks[0].sources[0]", "CIDR"),
    ('[[trunks]]\nname = "a"\nsources = []\n', "trunks[0].sources", "at least one"),
    ('[[trunks]]\nsources = ["10.0.0.1"]\n', "trunks[0].name", "missing"),
    ('[[trunks]]\nname = "a"\n', "trunks[0].sources", "missing"),
    ('[[trunks]]\nname = "a"\nsources = ["10.0.0.1"]\ntrust_pai = "yes"\n',
     "trunks[0].trust_pai", "true or false"),
    ('[[trunks]]\nname = "a"\nsources = ["10.0.0.1"]\ndefault_region = "XX"\n',
     "trunks[0].default_region", "two-letter region"),
    ('[[trunks]]\nname = "a"\nsources = ["10.0.0.1"]\n[[trunks]]\nname = "a"\nsources = ["::1"]\n',
     "trunks[1].name", "duplicate"),
    ('[[routes]]\nprefix = "+1-555"\ngateways = ["udp:a:1"]\n', "routes[0].prefix", "digits"),
    ('[[routes]]\nprefix = "1"\n', "routes[0].gateways", "missing"),
    ('[[routes]]\nprefix = "1"\ngateways = ["udp:a:1"]\n[[routes]]\nprefix = "+1"\n'
     'gateways = ["udp:b:1"]\n', "routes[1].prefix", "duplicate"),
    ("[calls]\nunknown_code = 200\n", "calls.unknown_code", "between 400 and 699"),
    ("[calls]\nuntrusted_code = 700\n", "calls.untrusted_code", "between 400 and 699"),
    ('[calls]\nunknown_code = "404"\n', "calls.unknown_code", "integer"),
    ("[calls]\nring_timeout_s = 0\n", "calls.ring_timeout_s", "positive"),
    ("[calls]\nmin_se_s = 30\n", "calls.min_se_s", "at least 90"),
    ("[calls]\nsession_expires_s = 60\n", "calls.session_expires_s", "min_se_s"),
    ('[calls]\nrefer = "maybe"\n', "calls.refer", "reject, pass"),
    ('[calls]\nunknown_reason = ""\n', "calls.unknown_reason", "non-empty"),
    ("[calls]\nmax_calls = -1\n", "calls.max_calls", "at least 0"),
    ('[store]\nbackend = "mysql"\n', "store.backend", "sqlite, redis"),
    ('[store]\nbackend = "redis"\n', "store.redis_url", "required"),
    ('[store]\nredis_url = "http://x"\n', "store.redis_url", "redis://"),
    ("[store]\npoll_interval_s = 0\n", "store.poll_interval_s", "positive"),
    ("[store]\nretention_days = -1\n", "store.retention_days", "0 (keep forever) or more"),
    ('[store]\nretention_days = "30d"\n', "store.retention_days", "number of days"),
    ("[store]\npurge_interval_s = 0\n", "store.purge_interval_s", "positive"),
    ('[store]\nredis_prefix = "a b:"\n', "store.redis_prefix", "without spaces"),
    ('[log]\nlevel = "loud"\n', "log.level", "debug, info, warning, error, critical"),
    ('[log]\nformat = "xml"\n', "log.format", "auto, json, console"),
    ('sip = "x"\n', "sip", "expected a table"),
    ('trunks = ["a"]\n', "trunks[0]", "expected a table"),
    ('rules_file = "missing.toml"\n', "rules_file", "no such file"),
    ("[sip]\nsource_rate = -1\n", "sip.source_rate", "expected a number >= 0"),
    ("[sip]\nsource_burst = 0.5\n", "sip.source_burst", "expected a number >= 1"),
    ('[sip]\ntrusted_sources = ["10.0.0.0/33"]\n', "sip.trusted_sources[0]", "CIDR"),
    ('[sip]\ntrusted_sources = "10.0.0.0/8"\n', "sip.trusted_sources", "expected a list"),
]


def test_source_limits_are_read(tmp_path: Path) -> None:
    text = '[sip]\nsource_rate = 0\nsource_burst = 5\ntrusted_sources = ["203.0.113.0/24", "2001:db8::1"]\n'
    sip = load_config(write(tmp_path, text), env={}).sip
    assert sip.source_rate == 0.0 and sip.source_burst == 5.0
    assert [str(n) for n in sip.trusted_sources] == ["203.0.113.0/24", "2001:db8::1/128"]
    default = load_config(env={}).sip
    assert (default.source_rate, default.source_burst) == (100.0, 200.0)
    assert [str(n) for n in default.trusted_sources] == ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize(("text", "key", "fragment"), ERRORS)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    err = info.value
    assert err.file == str(path)
    assert err.key == key
    assert fragment in str(err)
    assert str(err).startswith(f"{path}: {key}: ")


def test_error_message_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[[routes]]\nprefix = "1"\ngateways = ["udp:a:1", "foo"]\n')
    with pytest.raises(ConfigError) as info:
        load_config("sipmask.toml", env={})
    assert str(info.value).startswith(
        'sipmask.toml: routes[0].gateways[1]: expected "udp|tcp|tls:HOST:PORT", got "foo"'
    )


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ("[sip]\nlisen = []\n", "sip.lisen", "listen"),
        ("[calls]\nring_timeout = 5\n", "calls.ring_timeout", "ring_timeout_s"),
        ("[[trunks]]\nname = 'a'\nsources = ['::1']\ntrust_pia = true\n",
         "trunks[0].trust_pia", "trust_pai"),
        ("[[routes]]\nprefix = '1'\ngateway = ['udp:a:1']\n", "routes[0].gateway", "gateways"),
        ("[stor]\n", "stor", "store"),
        ('rule_file = "x"\n', "rule_file", "rules_file"),
    ],
)
def test_unknown_key_suggests(tmp_path: Path, text: str, key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.key == key
    assert f'did you mean "{suggestion}"?' in str(info.value)


def test_unknown_key_without_close_match_lists_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known keys: level, format"):
        load_config(write(tmp_path, "[log]\nzzz = 1\n"), env={})


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(tmp_path / "absent.toml", env={})
    assert info.value.key is None
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[sip\n"), env={})


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "error"\n[store]\npath = "a.db"\n')
    env = {
        "SIPMASK_CONFIG": str(path),
        "SIPMASK_LOG_LEVEL": "debug",
        "SIPMASK_LOG_FORMAT": "console",
        "SIPMASK_STORE_PATH": "/var/lib/sipmask/b.db",
        "SIPMASK_LISTEN": "udp:0.0.0.0:5070, tcp:[::]:5070",
    }
    config = load_config(env=env)
    assert config.source == path.resolve()
    assert config.log == LogConfig("debug", "console")
    assert config.store.path == "/var/lib/sipmask/b.db"
    assert config.sip.listen == (ListenSpec("udp", "0.0.0.0", 5070), ListenSpec("tcp", "::", 5070))


def test_explicit_path_wins_over_env_config(tmp_path: Path) -> None:
    a = write(tmp_path, '[log]\nlevel = "error"\n', "a.toml")
    config = load_config(a, env={"SIPMASK_CONFIG": str(tmp_path / "absent.toml")})
    assert config.log.level == "error"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SIPMASK_LOG_LEVEL": "chatty"}, "SIPMASK_LOG_LEVEL"),
        ({"SIPMASK_LOG_FORMAT": "xml"}, "SIPMASK_LOG_FORMAT"),
        ({"SIPMASK_LISTEN": "udp:1.2.3.4:5060,bogus"}, "SIPMASK_LISTEN[1]"),
        ({"SIPMASK_LISTEN": " , "}, "SIPMASK_LISTEN"),
        ({"SIPMASK_LISTEN": "tls:0.0.0.0:5061"}, "sip.tls_cert"),
    ],
)
def test_env_errors(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert info.value.key == key
    assert info.value.file == "environment"


def test_config_is_frozen() -> None:
    config = load_config(env={})
    with pytest.raises(AttributeError):
        config.log = LogConfig()  # type: ignore[misc]


def test_store_redis_and_retention_keys(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nbackend = "redis"\nredis_url = "redis://10.0.0.5:6379/2"\n'
                           'redis_prefix = "mask:"\nretention_days = 7.5\npurge_interval_s = 600\n')
    store = load_config(path, env={}).store
    assert (store.backend, store.redis_url, store.redis_prefix) == (
        "redis", "redis://10.0.0.5:6379/2", "mask:")
    assert store.retention_days == 7.5 and store.purge_interval_s == 600.0
    assert load_config(write(tmp_path, "[store]\nretention_days = 0\n"), env={}).store \
        .retention_days == 0.0
    assert StoreConfig().retention_days == 30.0
