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


class WorkerError(SurfError):
    """A job sent to a worker process (a Ray task) failed or was lost with its worker (exit code 1)."""

    exit_code = 1


def one_line(exc: BaseException) -> str:
    """An exception as one line: a surf error's own message, otherwise its type and first line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, SurfError):
        return lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
