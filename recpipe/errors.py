"""Errors in what the user gave — a file, a flag, a recipe key, an item name — or in the machine it runs on (a full
disk), as opposed to bugs.

The ``recpipe`` command turns a ``UserError`` into one clear line and exit status 2; any other exception keeps its
traceback. Each subclass is also the built-in exception it refines, so ``except ValueError`` (and the like) still
catches it.
"""


class UserError(Exception):
    """A problem with the user's input rather than with recpipe."""


class InvalidInputError(UserError, ValueError):
    """An invalid value: a flag, a recipe key, a record in a data file, a configuration that cannot work."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named, or that an earlier command should have made, is missing."""


class UnknownNameError(UserError, KeyError):
    """An unknown item or user."""

    def __str__(self):
        return str(self.args[0])  # KeyError would quote the message


class MissingPackageError(UserError, ImportError):
    """An optional package that the requested model or data needs is not installed."""


class ChangedSettingsError(InvalidInputError):
    """An output folder holds a run with other settings than the ones given: resuming it would mix the two."""


class CorruptFileError(UserError, ValueError):
    """A file recpipe wrote earlier (checkpoint weights, config) is truncated or damaged."""


class WriteFailedError(UserError, OSError):
    """The machine could not store what recpipe wrote (a full disk, a quota); what was written before is intact."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss part became NaN or infinite; training stopped before the optimizer step that would spread it."""
