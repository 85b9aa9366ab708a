"""voicelab's REST service: `voicelab api`, or any ASGI server with `voicelab.surfaces.api:app`.

    uvicorn voicelab.surfaces.api:app --port 8000        # settings from VOICELAB_API_* (see ServiceSettings)

`app` does nothing until a server starts it: then it loads the datasets, starts the local
backend (or reaches the hosted platform) and serves until stopped. `create_app(settings)` makes
another with explicit settings. Needs the `api` extra: pip install 'voicelab[api]'.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from voicelab.spec.errors import MissingDependency

    raise MissingDependency(f"{exc.name} is needed for the REST service: pip install 'voicelab[api]' "
                            "(scripts/setup.sh installs it)") from None

from voicelab.surfaces.api.routes import create_app
from voicelab.surfaces.api.service import Service, ServiceSettings

app = create_app()

__all__ = ["Service", "ServiceSettings", "app", "create_app"]
