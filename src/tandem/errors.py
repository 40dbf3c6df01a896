"""The one exception type the command line turns into a clean message and a non-zero exit."""


class TandemError(Exception):
    """A user-facing error: bad input, bad configuration, missing data. Its message says what and where."""
