"""The product's contracts (OpenAPI document, stream JSON Schemas), shipped as package data.

Read them with `read_text(name)`, never by a path relative to the source tree: an installed
wheel has no source tree.
"""

from __future__ import annotations

from importlib.resources import files


def read_text(name: str) -> str:
    """The contract file `name` (e.g. `openapi.yaml`) as text."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
