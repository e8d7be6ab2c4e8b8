"""Errors a user can act on. The command line prints them as one line and exits non-zero."""


class DqnError(Exception):
    """Base class: the message is a complete sentence naming what is wrong and where."""


class ConfigError(DqnError):
    """A preset, key or value that is not allowed."""


class DataFileError(DqnError):
    """An HDF5 file that is missing, truncated, corrupt or of the wrong kind."""


class FileAccessError(DataFileError):
    """An HDF5 file this process may not read (no permission) or has not the memory to
    read: no sign that the file is damaged, so a resume stops rather than set an epoch
    aside for it."""


class RunMismatchError(DqnError):
    """An output directory that holds a run of another configuration."""


class RunLockedError(DqnError):
    """A run directory another process is writing."""


class Diverged(DqnError):
    """Training produced a non-finite loss or weights; it stopped after saving what is
    needed to inspect it. Its own exit status, to tell it from a failure worth retrying;
    a scheduler's retry stops at once, as the run's diverged.h5 is still there."""

    exit_status = 3


class Stopped(Exception):
    """Training stopped by a signal after saving its state; running it again continues.
    Not a DqnError: nothing is wrong, and the exit status is 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def os_error_line(error: OSError) -> str:
    """An OSError (a path that cannot be written: unwritable, not a directory, disk full)
    as one line naming the path, or both of a rename's (`SOURCE -> TARGET`, as Python
    orders them): what a command prints instead of a traceback."""
    paths = " -> ".join(str(p) for p in (error.filename, error.filename2) if p is not None)
    return f"{paths}: {error.strerror or error}" if paths else str(error.strerror or error)
