"""sipmask configuration: one TOML file plus ``SIPMASK_*`` environment overrides.

Every key is optional; with no file sipmask listens on ``udp:127.0.0.1:5060``, trusts calls
from loopback only and keeps its pairings in ``./sipmask.db``. Errors name the file, the key
(a dotted path such as ``routes[0].gateways[1]``) and the expected form::

    sipmask.toml: routes[0].gateways[1]: expected "udp|tcp|tls:HOST:PORT", got "foo"

Unknown keys are errors, with a "did you mean" suggestion, so a typo never silently falls back
to a default. Relative paths written in the file are taken relative to the file's directory;
relative paths from the environment or defaults are relative to the working directory.
``SIPMASK_CONFIG`` names the file when no path is passed. The key reference with examples is
``docs/config.md``.

    model.py     the frozen dataclasses (Config and one per section), each field documented
    fields.py    validators of single values; ConfigError; the key check shared with rules files
    sections.py  one parser per TOML section
    env.py       ``SIPMASK_*`` overrides
    load.py      load_config: read the file, parse, apply the environment, cross-check
"""

from .fields import ConfigError, LocatedError, parse_address, parse_hostport
from .load import load_config
from .model import (
    DEFAULT_RULES_FILE,
    ApiConfig,
    CallsConfig,
    ClusterConfig,
    Config,
    Gateway,
    HookConfig,
    ListenSpec,
    LogConfig,
    MediaConfig,
    RouteConfig,
    RtpengineSpec,
    SipConfig,
    StoreConfig,
    TrunkConfig,
    WebhookConfig,
)

__all__ = [
    "DEFAULT_RULES_FILE",
    "ApiConfig",
    "CallsConfig",
    "Config",
    "ConfigError",
    "Gateway",
    "HookConfig",
    "ListenSpec",
    "LocatedError",
    "ClusterConfig",
    "LogConfig",
    "MediaConfig",
    "RouteConfig",
    "RtpengineSpec",
    "SipConfig",
    "StoreConfig",
    "TrunkConfig",
    "WebhookConfig",
    "load_config",
    "parse_address",
    "parse_hostport",
]
