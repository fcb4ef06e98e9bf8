"""The two ways a release command stops: the request is refused (exit 2) or a check or AWS call failed (exit 1)."""


class Refused(Exception):
    """Bad input or a state the user must resolve first; nothing was changed. `str()` is one line."""


class Failed(Exception):
    """A check failed (verify), a concurrent writer won, or AWS answered with an error. `str()` is one line."""
