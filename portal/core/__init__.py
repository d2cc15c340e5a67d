"""Pages for nobody in particular: the front door, health check, brand stylesheet."""

from portal.core.routes import bp

__all__ = ["bp"]
