"""Project exceptions: every input problem a person can act on is one of these."""


class PathcnnError(Exception):
    """An error with a one-line message naming the file or key, what is wrong and what to do.

    The CLI prints it without a traceback (``--debug`` shows the traceback).
    """


class ParamsError(PathcnnError):
    """A value in params.yaml (or a search space) is missing, unknown, mistyped or out of range."""


class ImageError(PathcnnError):
    """An input image cannot be used: not an image, corrupt, truncated, too large or empty."""
