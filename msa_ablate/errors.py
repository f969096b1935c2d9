"""Errors that are the user's to fix: the entry point prints them as one line and exits 2."""


class UserError(ValueError):
    """Bad input; the message is one line naming the file, key or option at fault."""


class DataError(UserError):
    """A data file that cannot be used as MOSI data."""


class ConfigError(UserError):
    """A setting or a combination of options that cannot run."""
