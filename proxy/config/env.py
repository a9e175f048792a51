"""``SIPMASK_*`` environment overrides, applied after the file.

``SIPMASK_LOG_LEVEL``, ``SIPMASK_LOG_FORMAT``, ``SIPMASK_STORE_PATH``, ``SIPMASK_LISTEN``
(comma-separated listen specs), ``SIPMASK_API_LISTEN`` (``HOST:PORT`` or ``off``),
``SIPMASK_HOOK_SECRET`` and ``SIPMASK_HOOK_BEARER_TOKEN`` (the lookup hook's credentials), and
the variables that ``webhooks[*].secret_env`` names. Errors name the variable as the key and
"environment" as the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from .fields import ADDRESS_FORM, ConfigError, Source, choice, hostport, string
from .model import LOG_FORMATS, Config
from .sections import listen_spec, log_level

__all__ = ["ENV_FILE", "apply_env"]

ENV_FILE: Final = "environment"
"""The "file" errors name for a bad ``SIPMASK_*`` variable, and when there is no file."""


def apply_env(config: Config, env: Mapping[str, str]) -> Config:
    """*config* with the ``SIPMASK_*`` variables of *env* applied."""
    src = Source(ENV_FILE, None)
    if (level := env.get("SIPMASK_LOG_LEVEL")) is not None:
        config = replace(config, log=replace(config.log,
                                             level=log_level(src, level, "SIPMASK_LOG_LEVEL")))
    if (fmt := env.get("SIPMASK_LOG_FORMAT")) is not None:
        config = replace(config, log=replace(
            config.log, format=choice(src, fmt, "SIPMASK_LOG_FORMAT", LOG_FORMATS)))
    if (path := env.get("SIPMASK_STORE_PATH")) is not None:
        config = replace(config, store=replace(
            config.store, path=string(src, path, "SIPMASK_STORE_PATH").strip()))
    if (api_listen := env.get("SIPMASK_API_LISTEN")) is not None:
        text = api_listen.strip()
        if text.lower() in ("off", "none", "disabled"):
            config = replace(config, api=replace(config.api, enabled=False))
        else:
            host, port = hostport(src, text, "SIPMASK_API_LISTEN")
            config = replace(config, api=replace(config.api, enabled=True, host=host, port=port))
    if (listen := env.get("SIPMASK_LISTEN")) is not None:
        specs = tuple(
            listen_spec(src, item.strip(), f"SIPMASK_LISTEN[{i}]")
            for i, item in enumerate(listen.split(","))
            if item.strip()
        )
        if not specs:
            raise src.error("SIPMASK_LISTEN", f"expected comma-separated {ADDRESS_FORM}")
        config = replace(config, sip=replace(config.sip, listen=specs))
    return _apply_secret_env(config, env, src)


def _apply_secret_env(config: Config, env: Mapping[str, str], src: Source) -> Config:
    """Secrets kept out of the file: the hook's, and each webhook's ``secret_env``."""
    hook = config.hook
    if (secret := env.get("SIPMASK_HOOK_SECRET")) is not None:
        hook = replace(hook, secret=string(src, secret, "SIPMASK_HOOK_SECRET"))
    if (bearer := env.get("SIPMASK_HOOK_BEARER_TOKEN")) is not None:
        hook = replace(hook, bearer_token=string(src, bearer, "SIPMASK_HOOK_BEARER_TOKEN"))
    webhooks = list(config.webhooks)
    for i, hook_cfg in enumerate(webhooks):
        if hook_cfg.secret_env is not None:
            secret = env.get(hook_cfg.secret_env)
            if not secret:
                raise ConfigError(ENV_FILE, f"webhooks[{i}].secret_env",
                                  f"environment variable {hook_cfg.secret_env} is not set")
            webhooks[i] = replace(hook_cfg, secret=string(src, secret, hook_cfg.secret_env))
    return replace(config, hook=hook, webhooks=tuple(webhooks))
