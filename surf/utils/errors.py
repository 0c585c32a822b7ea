"""User-facing errors: each carries a one-line message that names the fix, and an exit code."""


class SurfError(Exception):
    """Base class for errors the CLI reports as one line (no traceback)."""

    exit_code = 2


class ConfigError(SurfError):
    """A bad configuration value or key (exit code 2)."""


class DataError(SurfError):
    """Missing or malformed data, or sizes the data cannot satisfy (exit code 2)."""


class TopologyError(SurfError):
    """A graph that cannot be used, e.g. disconnected (exit code 2)."""


class TrainingError(SurfError):
    """Training failed numerically (non-finite values) (exit code 1)."""

    exit_code = 1


def ensure(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``: the one-line check of a user-supplied value."""
    if not ok:
        raise ConfigError(message)
