"""Loading: read the TOML file, parse its sections, apply the environment, cross-check."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .env import ENV_FILE, apply_env
from .fields import ConfigError, LocatedError, Source
from .model import Config
from .sections import parse_config

__all__ = ["SEARCH_PATH", "find_config", "load_config", "read_toml"]

SEARCH_PATH: tuple[Path, ...] = (Path("sipmask.toml"), Path("/etc/sipmask/sipmask.toml"))
"""Where the CLI looks for a config file when neither ``-c`` nor ``$SIPMASK_CONFIG`` names
one, in order (the first is relative to the working directory)."""


def find_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
    search: tuple[Path, ...] = SEARCH_PATH,
) -> str | None:
    """The config file every ``sipmask`` command uses: *path* (``-c``), else
    ``$SIPMASK_CONFIG``, else the first file of *search* that exists; None: the defaults.

    A file named by ``-c`` or the environment is returned whether it exists or not, so that
    a typo is an error rather than a silent fall back to the defaults.
    """
    if path is not None:
        return os.fspath(path)
    if env.get("SIPMASK_CONFIG"):
        return env["SIPMASK_CONFIG"]
    for candidate in search:
        if candidate.is_file():
            return os.fspath(candidate)
    return None


def read_toml(path: str | os.PathLike[str], error: type[LocatedError]) -> dict[str, Any]:
    """The TOML document at *path*; *error* (file as given, no key) when unreadable or invalid.

    Shared by the config and the rules file (``proxy.b2bua.policy``).
    """
    file = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise error(file, None, f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(file, None, f"invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise error(file, None, "invalid TOML: not UTF-8 text") from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> Config:
    """Load and validate the configuration.

    Args:
        path: the TOML file. None means ``$SIPMASK_CONFIG`` if set, else all defaults.
        env: the environment to read ``SIPMASK_*`` overrides from.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key or invalid value.
    """
    if path is None:
        path = env.get("SIPMASK_CONFIG") or None
    if path is None:
        config = Config()
        file = ENV_FILE
    else:
        file = os.fspath(path)
        source = Path(file)
        raw = read_toml(file, ConfigError)
        config = parse_config(Source(file, source.resolve().parent), raw, source.resolve())
    config = apply_env(config, env)
    _check_tls(config, file)
    _check_unknown_policy(config, file)
    return config


def _check_unknown_policy(config: Config, file: str) -> None:
    if config.calls.unknown_policy == "hook" and not config.hook.enabled:
        raise ConfigError(file, "hook.url", 'required when calls.unknown_policy = "hook"')


def _check_tls(config: Config, file: str) -> None:
    if not any(spec.transport == "tls" for spec in config.sip.listen):
        return
    for name in ("tls_cert", "tls_key"):
        if getattr(config.sip, name) is None:
            raise ConfigError(file, f"sip.{name}", "required when listening on tls (a PEM file)")
