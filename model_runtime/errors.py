"""Errors meant for the person running the program: one clear line, no traceback.

Raise `UserError` (or a subclass) with a message that says what was wrong and
how to fix it; the CLI prints it and exits non-zero, the server sends it as an
`error` event.
"""


class UserError(Exception):
    """Something the user can fix: bad input file, missing checkpoint file, bad option."""


class AudioInputError(UserError):
    pass


class CheckpointError(UserError):
    pass
