"""The plane's one exception type."""


class PlaneError(RuntimeError):
    """The plane could not be started or reached; the message says what to look at."""
