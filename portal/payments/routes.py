from __future__ import annotations

from portal.payments import bp  # noqa: F401  (views arrive with payments)
