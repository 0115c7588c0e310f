"""Errors a user can cause. Each carries one clear message naming the file or value and how to fix it."""


class ArmVisionError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class CheckpointError(ArmVisionError, ValueError):
    """A checkpoint file is missing, truncated, unsafe, or does not fit the model."""


class ConfigError(ArmVisionError, ValueError):
    """A size, option or combination of options that cannot work."""


class DataError(ArmVisionError, ValueError):
    """A data folder or image that cannot be used."""
