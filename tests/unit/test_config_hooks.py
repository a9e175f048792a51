"""Configuration of the lookup hook, event webhooks and the unknown-caller policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import (
    CallsConfig,
    ConfigError,
    Gateway,
    HookConfig,
    WebhookConfig,
    load_config,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipmask.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_hook_off_no_webhooks_policy_reject() -> None:
    config = load_config(env={})
    assert config.hook == HookConfig() and not config.hook.enabled
    assert config.hook.send == "tokens" and config.hook.timeout_s == 1.0
    assert config.hook.cache_s == 30.0 and config.hook.cache_size == 10000
    assert config.webhooks == ()
    assert config.calls.unknown_policy == "reject" and config.calls.fallback_route == ()


def test_full_hook_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[calls]
unknown_policy = "hook"
[hook]
url = "https://lookup.example.com/sipmask"
send = "numbers"
timeout_s = 0.5
cache_s = 0
cache_size = 50
secret = "s3cret"
bearer_token = "tok"
default_region = "gb"
"""), env={})
    hook = config.hook
    assert hook.enabled and hook.url == "https://lookup.example.com/sipmask"
    assert (hook.send, hook.timeout_s, hook.cache_s, hook.cache_size) == ("numbers", 0.5, 0.0, 50)
    assert (hook.secret, hook.bearer_token, hook.default_region) == ("s3cret", "tok", "GB")
    assert "s3cret" not in repr(hook) and "tok'" not in repr(hook)
    assert config.calls.unknown_policy == "hook"


def test_hook_credentials_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[hook]\nurl = "http://127.0.0.1:9000/x"\nsecret = "file"\n')
    hook = load_config(path, env={"SIPMASK_HOOK_SECRET": "env-secret",
                                  "SIPMASK_HOOK_BEARER_TOKEN": "env-token"}).hook
    assert (hook.secret, hook.bearer_token) == ("env-secret", "env-token")


def test_webhooks(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[[webhooks]]
url = "https://events.example.com/a"
secret = "one"
events = ["call.ended", "session.expired"]
max_attempts = 3
include_numbers = true
timeout_s = 2
[[webhooks]]
url = "http://10.0.0.1:8000/b"
secret_env = "B_SECRET"
"""), env={"B_SECRET": "two"})
    a, b = config.webhooks
    assert a == WebhookConfig("https://events.example.com/a", "one",
                              ("call.ended", "session.expired"), 3, True, 2.0)
    assert a.wants("call.ended") and not a.wants("call.started")
    assert b.secret == "two" and b.events == () and b.wants("call.started")
    assert (b.max_attempts, b.include_numbers, b.timeout_s) == (5, False, 5.0)


def test_fallback_route_one_or_many(tmp_path: Path) -> None:
    one = load_config(write(tmp_path, '[calls]\nunknown_policy = "route"\n'
                                      'fallback_route = "udp:10.0.0.9:5060"\n'), env={})
    assert one.calls.fallback_route == (Gateway("udp", "10.0.0.9", 5060),)
    many = load_config(write(tmp_path, '[calls]\nunknown_policy = "ROUTE"\n'
                                       'fallback_route = ["tcp:ivr.example:5060", "udp:[::1]:5070"]\n'),
                       env={})
    assert many.calls.unknown_policy == "route"
    assert many.calls.fallback_route == (Gateway("tcp", "ivr.example", 5060),
                                         Gateway("udp", "::1", 5070))
    assert CallsConfig().fallback_route == ()


ERRORS = [
    ('[hook]\nurl = "ftp://x/y"\n', "hook.url", '"http://HOST[:PORT]/PATH"'),
    ('[hook]\nurl = "http://"\n', "hook.url", "expected"),
    ('[hook]\nurl = 5\n', "hook.url", "expected a string"),
    ('[hook]\nsend = "hashes"\n', "hook.send", "tokens, numbers"),
    ("[hook]\ntimeout_s = 0\n", "hook.timeout_s", "positive"),
    ("[hook]\ncache_s = -1\n", "hook.cache_s", "0 (off) or more"),
    ("[hook]\ncache_size = 0\n", "hook.cache_size", "at least 1"),
    ('[hook]\nsecret = ""\n', "hook.secret", "non-empty"),
    ("[hook]\nbearer_token = 1\n", "hook.bearer_token", "expected a string"),
    ('[hook]\ndefault_region = "XX"\n', "hook.default_region", "two-letter region"),
    ("[hook]\nurll = 1\n", "hook.urll", 'did you mean "url"?'),
    ('hook = "x"\n', "hook", "expected a table"),
    ('[[webhooks]]\nsecret = "a"\n', "webhooks[0].url", "missing"),
    ('[[webhooks]]\nurl = "mailto:a@b"\n', "webhooks[0].url", "http"),
    ('[[webhooks]]\nurl = "http://a/"\nevents = ["call.rang"]\n', "webhooks[0].events[0]",
     "call.started, call.answered, call.ended, session.expired"),
    ('[[webhooks]]\nurl = "http://a/"\nevents = "call.ended"\n', "webhooks[0].events",
     "expected a list"),
    ('[[webhooks]]\nurl = "http://a/"\nmax_attempts = 0\n', "webhooks[0].max_attempts",
     "between 1 and 100"),
    ('[[webhooks]]\nurl = "http://a/"\ninclude_numbers = "yes"\n', "webhooks[0].include_numbers",
     "true or false"),
    ('[[webhooks]]\nurl = "http://a/"\ntimeout_s = -2\n', "webhooks[0].timeout_s", "positive"),
    ('[[webhooks]]\nurl = "http://a/"\nsecret = "a"\nsecret_env = "B"\n',
     "webhooks[0].secret_env", "not both"),
    ('[[webhooks]]\nurl = "http://a/"\nsigned = true\n', "webhooks[0].signed", "unknown key"),
    ('webhooks = {url = "http://a/"}\n', "webhooks", "expected a list"),
    ('[calls]\nunknown_policy = "ask"\n', "calls.unknown_policy", "reject, hook, route"),
    ('[calls]\nunknown_policy = "route"\n', "calls.fallback_route", "required"),
    ('[calls]\nfallback_route = "10.0.0.1:5060"\n', "calls.fallback_route", "udp|tcp|tls"),
    ('[calls]\nfallback_route = []\n', "calls.fallback_route", "at least one"),
    ('[calls]\nfallback_route = ["udp:a:1", "x"]\n', "calls.fallback_route[1]", "udp|tcp|tls"),
    ('[calls]\nunknown_policy = "hook"\n', "hook.url", "required"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), ERRORS)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_webhook_secret_env_must_be_set(tmp_path: Path) -> None:
    path = write(tmp_path, '[[webhooks]]\nurl = "http://a/"\nsecret_env = "HOOK_KEY"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == "webhooks[0].secret_env" and info.value.file == "environment"
    assert "HOOK_KEY is not set" in str(info.value)


def test_empty_hook_secret_in_environment_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"SIPMASK_HOOK_SECRET": " "})
    assert info.value.key == "SIPMASK_HOOK_SECRET"
