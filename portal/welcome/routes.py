from __future__ import annotations

from portal.welcome import bp  # noqa: F401  (views arrive with the welcome portal)
