"""The one exception tree of the project.

    TLAError
     ├── ConfigError          settings are wrong: the message says which and how to fix
     ├── InvalidEvent         a stream entry or request violates the event contract
     └── StoreUnavailable     Redis cannot be reached or is still loading
"""

from __future__ import annotations


class TLAError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(TLAError):
    """A setting is missing or invalid; raised at start-up, never mid-stream."""


class InvalidEvent(TLAError):
    """An entry or request field breaks the contract; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StoreUnavailable(TLAError):
    """The baseline store (Redis) did not answer; callers must not guess a verdict."""
