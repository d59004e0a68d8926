"""The web view: pages at `/` (overview), `/endpoint` and `/anomalies`, served by the API
process on its one HTTP layer, and the JSON they read (`/v1/endpoints`, `/v1/baselines`,
`/v1/anomalies`).

`data.py` reads Redis into JSON with a bounded amount of work per request; `routes.py`
holds the thin handlers and serves the assets (`index.html`, `app.js`, `style.css`, package
data next to this file, read once with `importlib.resources`): plain HTML, CSS and one JS
module, no build step and nothing fetched from elsewhere, so the pages work offline.
"""

from __future__ import annotations

from importlib.resources import files


def read_asset(name: str) -> bytes:
    """The asset `name` (e.g. `app.js`) as shipped in the package."""
    return files(__name__).joinpath(name).read_bytes()
