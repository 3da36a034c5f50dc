"""Errors a user can cause. The CLIs print their message alone and exit non-zero."""


class UserInputError(Exception):
    """A bad file, config or argument. The message names what and where (file, line, field)."""


class DataFormatError(UserInputError):
    """A data file that cannot be read as its format says. Carries the file, line and field."""

    def __init__(self, path, message: str, line: int | None = None, field: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = str(path), line, field
