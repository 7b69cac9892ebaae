"""Domain exceptions. The CLI maps them to exit codes; messages name file, key and accepted values."""

from __future__ import annotations


class AugexportError(Exception):
    """Base class; `exit_code` is what the CLI returns for it."""

    exit_code = 1


class UsageError(AugexportError):
    """A bad flag, path or combination, found before any work starts (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A pipeline-file problem; `path` is where in the file (e.g. `stages[1].keras.zoom_range`)."""

    MAX_MESSAGE = 2000  # a hostile file's values are echoed in messages: keep them readable

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path = path[:300]
        self.source = source
        where = f"{source}: " if source else ""
        text = f"{where}{self.path}: {message}" if path else f"{where}{message}"
        if len(text) > self.MAX_MESSAGE:
            text = text[: self.MAX_MESSAGE] + f"… ({len(text) - self.MAX_MESSAGE} more characters)"
        super().__init__(text)


class ExportFailed(AugexportError):
    """A run that failed after work started; nothing was finalized (exit 1)."""

    exit_code = 1


class WorkerDied(ExportFailed):
    """A worker process died mid-run (the OOM killer, a signal): finished shards stay for --resume."""


class SourceUnavailable(ExportFailed):
    """SOURCE's store cannot be reached (endpoint down, credentials gone) while the run reads it:
    the run fails (exit 1) instead of skipping every input."""


class VerifyFailed(AugexportError):
    """`inspect --verify` found a shard that does not match the manifest (exit 1)."""

    exit_code = 1


class DecodeError(AugexportError):
    """One input could not be turned into pixels; the engine skips it or fails the run."""


class Interrupted(BaseException):  # like KeyboardInterrupt, not an error
    """SIGTERM (or SIGINT) during a run: finished shards and the journal stay for `--resume`."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")
