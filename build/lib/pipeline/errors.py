"""The one error type users see: a bad file, key or value, reported on one line."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad input. Rendered as `FILE: KEY: MESSAGE`; the CLI and stages exit with code 2."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.key = key

    def located(self, *, file: str | None = None, key_prefix: str | None = None) -> ConfigError:
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return ConfigError(self.message, file=self.file or file, key=key)

    def __str__(self) -> str:
        key = self.key if self.key is None or self.key.isprintable() else repr(self.key)  # e.g. a key "\n"
        parts = [p for p in (self.file, key) if p]
        # One line, always: a value or file name with a line break in it is shown escaped.
        return ": ".join([*parts, self.message]).replace("\r", "\\r").replace("\n", "\\n")
