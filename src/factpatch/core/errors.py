"""The one exception type factpatch raises for bad input; the CLI prints it as a one-line error."""


class FactpatchError(Exception):
    """A user-facing error: bad arguments, files or models. The message is one line, ready to print."""
