"""``UNSET``: an argument (or a field of a request) that was not given, where None is a value of its own (an access
list of None means public; one not given means "leave it as it is")."""

from __future__ import annotations


class Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()
