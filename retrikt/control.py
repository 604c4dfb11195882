"""Cooperative cancellation shared by every long loop (the UI sets a flag; loops check it between steps)."""


class Cancelled(Exception):
    """Raised between steps when the caller's stop flag is set; artefacts finished so far stay valid."""
