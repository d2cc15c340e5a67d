from __future__ import annotations

from portal.api import bp  # noqa: F401  (endpoints arrive with the handoff API)
