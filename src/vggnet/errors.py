"""Typed errors. Library code raises these with a message that says what to do;
only the CLI turns them into exit codes (2 for bad input) and one-line messages."""


class VGGNetError(Exception):
    """Base class: bad input the user can fix. The message says how."""


class ConfigError(VGGNetError, ValueError):
    """A configuration value or model argument is invalid."""


class DataError(VGGNetError):
    """A dataset is missing, has the wrong layout, or cannot be read."""


class WeightsError(VGGNetError):
    """A weights file does not match the model, or is unsafe or unreadable."""


class TrainingError(VGGNetError):
    """Training cannot continue (e.g. a non-finite loss that recovery could not fix)."""


class VGGNetWarning(UserWarning):
    """Something the user should know that does not stop the run (files skipped, a conversion made).
    The CLI prints it as one line; library warnings are held back (see vggnet.cli)."""
