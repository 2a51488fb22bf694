"""Errors the admin API reports, each with the gRPC status it maps to (see admin.py)."""


class AdminError(Exception):
    """Base class: the message is shown to the caller, so it never holds a secret."""


class InvalidArgument(AdminError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.message = problem


class NotFound(AdminError):
    pass


class AlreadyExists(AdminError):
    pass
