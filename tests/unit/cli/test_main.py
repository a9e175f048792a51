"""The ``sipmask`` command as a whole (proxy/cli/__init__.py)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from proxy.cli import build_parser


def test_every_option_and_argument_has_a_help_text(monkeypatch: pytest.MonkeyPatch) -> None:
    added: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    real = argparse.ArgumentParser.add_argument

    def recording(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> argparse.Action:
        added.append((args, kwargs))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    build_parser()
    assert len(added) > 50
    missing = [args for args, kwargs in added if not kwargs.get("help")]
    assert not missing, f"options without help: {missing}"
