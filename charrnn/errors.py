class UserError(Exception):
    """A problem the user can fix (bad path, bad config, wrong checkpoint).

    Entry scripts print its message on one line and exit with code 2, without a traceback. From Python
    (charrnn.load, charrnn.train, a model's methods) it is raised as it is, with the same message.
    """


class UserValueError(UserError, ValueError):
    """A value of the right type that is wrong (a key that does not exist, a negative length): code that
    catches ValueError, as Python's own functions raise it, catches this too."""


class UserTypeError(UserError, TypeError):
    """A value of the wrong type (a number where text belongs, one string where a list of them belongs)."""
