"""One exception hierarchy for neurolake.

Every error a user can cause (a bad URL, a corrupt file, an unknown run) is a
:class:`NeurolakeError` whose message says what went wrong, where, and what to
do next. The CLI prints the message as one line and exits with code 2.
"""

from __future__ import annotations


class NeurolakeError(Exception):
    """Base class of every error neurolake raises on purpose."""


class LakeError(NeurolakeError):
    """The lake itself is missing, unreadable or of an unsupported format."""


class NotALakeError(LakeError):
    """The URL exists but holds no ``lake.json``."""


class LakeVersionError(LakeError):
    """The lake was written by a newer neurolake."""


class RunError(NeurolakeError):
    """A run is unknown, corrupt, or conflicts with an existing one."""


class RunBusyError(RunError):
    """Another process holds the run's write lease."""


class RunLeaseLostError(RunError):
    """This writer's lease on the run was taken over or expired; it must stop writing."""


class RunNotFoundError(RunError):
    """No run of that id in the lake."""


class RunConflictError(RunError):
    """A run of that id exists with a different manifest."""


class CorruptFileError(NeurolakeError):
    """A file of the lake cannot be parsed (``run.json``, a commit marker, a table)."""


class PlanError(NeurolakeError):
    """Invalid planning input (negative frame counts, duplicate utterance ids, ...)."""


class OutOfRangeError(NeurolakeError):
    """Rows were requested or written outside the range that is allowed."""


class LayerNotFoundError(NeurolakeError):
    """A layer name that the run did not capture."""


class IntegrityError(NeurolakeError):
    """Committed data is missing or does not match its checksum."""


class SpecError(NeurolakeError):
    """A user-given specification (corpus, model, binarisation, ...) is invalid."""


class InputError(NeurolakeError):
    """One input item (an audio file, a transcript line) cannot be processed."""


class SchemaError(NeurolakeError):
    """A table handed to the store lacks required columns or has the wrong types."""


class QueryError(NeurolakeError):
    """A SQL statement or predicate that is invalid or not allowed."""


class GroupError(NeurolakeError):
    """A contrast group that is unknown, empty, or conflicts with an existing one."""


_STORAGE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google")


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: a Ray task's cause, an exception's cause) is the
    storage failing (a refused or unreachable endpoint, a missing directory), which a user
    fixes outside neurolake, rather than a bug."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) or type(seen).__module__.split(".")[0] in _STORAGE_MODULES:
            return True
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return False


def root_cause(exc: BaseException) -> BaseException:
    """What a failed Ray task raised (its ``cause``), else ``exc`` itself."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) < limit else text[: limit - 3] + "..."
