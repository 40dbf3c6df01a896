"""The one exception type the command line turns into a clean message and a non-zero exit."""


class TandemError(Exception):
    """A user-facing error: bad input, bad configuration, missing data. Its message says what and where."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message as one line for a TandemError: its first non-empty line (torch and FAISS append C++
    stack frames below it), at most `limit` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
