"""The web view: pages at `/` (overview), `/endpoint` and `/anomalies`, served by the API
process on its one HTTP layer, and the JSON they read (`/v1/endpoints`, `/v1/baselines`,
`/v1/anomalies`).

`data.py` reads Redis into JSON with a bounded amount of work per request; `routes.py`
holds the thin handlers and serves the assets (package data next to this file, read once
with `importlib.resources`): `index.html`, `style.css` and three plain JS modules (`ui.js`
the DOM helpers and the API with its token, `heatmap.js`, `app.js` the pages), no build
step and nothing fetched from elsewhere, so the pages work offline.
"""

from __future__ import annotations

from importlib.resources import files


def read_asset(name: str) -> bytes:
    """The asset `name` (e.g. `app.js`) as shipped in the package."""
    return files(__name__).joinpath(name).read_bytes()
