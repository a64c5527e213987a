"""The project's own error types: each message names the file, line or key at fault."""


class EmoclipError(Exception):
    """Base class for errors that emoclip reports to the user without a traceback."""


class DataError(EmoclipError):
    """Bad or missing input data: the message names the file (and line) and what was expected."""


class ConfigError(EmoclipError):
    """A config value that cannot work: the message names the key and what was expected."""


class BackboneLoadError(EmoclipError):
    """Pretrained weights could not be loaded; never silently replaced by random ones."""


class TrainingError(EmoclipError):
    """Training has diverged (the loss stopped being finite, or exploded) and cannot go on; the
    message names where and the checkpoint that is kept, `where` holds epoch, batch and step."""

    def __init__(self, message: str, where: dict | None = None):
        super().__init__(message)
        self.where = dict(where or {})


class WriteError(EmoclipError):
    """A file could not be written (a full disk, a read-only folder, no permission); the message
    names the path and the cause. The file that was there before, if any, is kept whole."""


class RunFolderError(EmoclipError):
    """The run folder cannot be used by this command: it holds another run, or another run is
    writing it; the message says how to continue that run or where to go instead."""
