"""The one error every module fetch raises, with a reason a user can act on."""

from __future__ import annotations


class ModuleFetchError(Exception):
    """A module that could not be fetched or failed verification; the message names the URL and why.

    `reason` is a short stable label for metrics (`unreachable`, `not_found`, `unauthorized`,
    `bad_digest`, `bad_layout`, `too_large`, `bad_url`)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
