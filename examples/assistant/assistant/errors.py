"""Domain errors raised by the business modules; app.py maps each to an HTTP status."""

from __future__ import annotations


class AssistantError(Exception):
    """Base class of the service's expected errors."""


class NotFound(AssistantError, LookupError):
    """The tenant, user, session or record does not exist (404)."""


class Forbidden(AssistantError, PermissionError):
    """The acting user may not do this (403)."""


class Conflict(AssistantError):
    """The request clashes with the current state, e.g. ending an ended session (409)."""


class InvalidInput(AssistantError, ValueError):
    """A value the business rules reject, e.g. an unknown plan or an out-of-range threshold (422)."""


class FeatureDisabled(AssistantError):
    """A kill switch turned the feature off for this tenant (503)."""
