class UserError(Exception):
    """A problem the user can fix (bad path, bad config, wrong checkpoint).

    Entry scripts print its message on one line and exit with code 2, without a traceback.
    """
