"""First run: ``sipmask init``, the example config, the config search path, the race in
``app.start`` (a port taken after the start-up checks), the note of which config and store."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import stat
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from proxy.app import start
from proxy.cli import main
from proxy.cli.init import EXAMPLE, example_text
from proxy.config import Config, ConfigError, load_config
from proxy.config.fields import table_keys
from proxy.config.load import find_config

ROOT = Path(__file__).resolve().parents[3]

#: an optional key left out of the example: ``#key = value`` or ``#[table]`` (no space)
_OPTIONAL = re.compile(r"^#(?=\[|[a-z_]+ = )")


def _model_keys() -> set[str]:
    """Every key of the model, dotted: ``sip.listen``, ``webhooks.url``, ``rules_file``."""
    hints = typing.get_type_hints(Config)
    keys = set()
    for key in table_keys(Config):
        hint = hints[key]
        args = typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            keys |= {f"{key}.{k}" for k in table_keys(typing.cast(type[Any], hint))}
        elif typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
            keys |= {f"{key}.{k}" for k in table_keys(typing.cast(type[Any], args[0]))}
        else:
            keys.add(key)
    return keys


def _doc_keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        if isinstance(value, dict):
            keys |= _doc_keys(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                keys |= _doc_keys(item, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_the_example_in_the_tree_is_the_one_init_writes() -> None:
    assert (ROOT / EXAMPLE).read_text(encoding="utf-8") == example_text()


def test_the_example_holds_every_key_of_the_model_and_nothing_else() -> None:
    text = "\n".join(_OPTIONAL.sub("", line) for line in example_text().splitlines())
    assert _doc_keys(tomllib.loads(text)) == _model_keys()


def test_the_example_as_written_loads_and_keeps_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sipmask.toml"
    path.write_text(example_text())
    loaded = load_config(path, env={})
    defaults = load_config(None, env={})
    for section in ("sip", "calls", "api", "log", "hook"):
        assert getattr(loaded, section) == getattr(defaults, section), section
    assert loaded.trunks == defaults.trunks and loaded.routes == () and loaded.webhooks == ()
    assert loaded.store.path == str(tmp_path / "sipmask.db")  # relative to the file


def test_init_writes_the_example_and_keeps_an_existing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIPMASK_CONFIG", raising=False)
    assert main(["init"]) == 0
    written = tmp_path / "sipmask.toml"
    assert written.read_text() == example_text()
    assert stat.S_IMODE(written.stat().st_mode) & 0o077 in (0o044, 0o004, 0o040, 0)  # umask
    written.write_text("# mine\n")
    capsys.readouterr()
    assert main(["init"]) == 1
    assert "exists" in capsys.readouterr().err and written.read_text() == "# mine\n"
    assert main(["init", "--force"]) == 0 and written.read_text() == example_text()
    assert main(["init", "other.toml"]) == 0 and (tmp_path / "other.toml").exists()


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    etc = tmp_path / "etc.toml"
    search = (Path("sipmask.toml"), etc)
    assert find_config(None, {}, search) is None
    etc.write_text("")
    assert find_config(None, {}, search) == str(etc)
    (tmp_path / "sipmask.toml").write_text("")
    assert find_config(None, {}, search) == "sipmask.toml"
    assert find_config(None, {"SIPMASK_CONFIG": "env.toml"}, search) == "env.toml"
    assert find_config("given.toml", {"SIPMASK_CONFIG": "env.toml"}, search) == "given.toml"


def test_admin_commands_use_the_config_found_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI without -c and a server started with ./sipmask.toml use the same store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIPMASK_CONFIG", raising=False)
    monkeypatch.delenv("SIPMASK_KEY", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "sipmask.toml").write_text('[store]\npath = "data/x.db"\nkey_file = "data/x.key"\n')
    assert main(["token", "create", "ops", "--role", "admin"]) == 0
    assert (tmp_path / "data" / "x.db").exists() and not (tmp_path / "sipmask.db").exists()


def test_a_terminal_is_told_which_config_and_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIPMASK_CONFIG", raising=False)
    monkeypatch.delenv("SIPMASK_KEY", raising=False)
    import sys
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["pairing", "list"]) == 0
    err = capsys.readouterr().err
    assert err == f"sipmask: config built-in defaults, store sqlite {tmp_path / 'sipmask.db'}\n"
    (tmp_path / "sipmask.toml").write_text("")
    assert main(["pairing", "list"]) == 0
    assert capsys.readouterr().err.startswith(f"sipmask: config {tmp_path / 'sipmask.toml'}, ")


def test_a_port_taken_after_the_checks_is_one_config_error(tmp_path: Path) -> None:
    """``run`` checks first; a bind that fails in app.start all the same (another program took
    the port in between) is the same one line, not a traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        path = tmp_path / "sipmask.toml"
        path.write_text(f'[sip]\nlisten = ["udp:127.0.0.1:{port}"]\n[api]\nenabled = false\n'
                        f'[log]\nformat = "json"\n')
        config = load_config(path, env={})
        with pytest.raises(ConfigError) as info:
            asyncio.run(start(config))
    assert info.value.key == "sip.listen[0]"
    assert str(info.value) == (
        f"{path}: sip.listen[0]: udp:127.0.0.1:{port}: cannot bind: address already in use "
        "(is Asterisk or another SIP server running? choose another port in sip.listen)")
