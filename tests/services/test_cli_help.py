"""The CLI's help: every subcommand's `--help` says what it does, and the options of
`incidents` say what they do and their defaults."""

from __future__ import annotations

import argparse

import pytest

from services.cli import parser
from services.roles import ROLE_HELP, ROLES


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_role_is_a_subcommand() -> None:
    assert set(ROLES) <= set(subcommands())


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_each_subcommands_help_says_what_it_does(name: str) -> None:
    text = subcommands()[name].format_help()
    description = subcommands()[name].description
    assert description and description in " ".join(text.split())
    if name in ROLE_HELP:
        assert description == ROLE_HELP[name]


def test_incidents_options_have_help_with_defaults() -> None:
    text = " ".join(subcommands()["incidents"].format_help().split())
    for option, default in (("--state", "default all"), ("--since", "default 24h"),
                            ("--service", "default: every service"),
                            ("--limit", "default 100"), ("--json", "default: one line")):
        assert option in text
        assert default in text, option
