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
    """Training cannot go on (the loss stopped being finite); the message names what is kept."""
