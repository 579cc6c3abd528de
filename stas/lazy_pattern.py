"""Regular expressions compiled where they are first used, not where their module is imported.

A supervisor imports some 270 modules before it owns its bus name, and most of the patterns its
configuration and message modules define check values a run may never hold: durations, host
names, Fibre Channel addresses, secrets in a message, a kernel's symbol table. Compiling one
takes 0.1 to 0.3 ms on a real host and some thirty times that in the emulated test guest; of the
patterns below, a start that loads an ordinary configuration uses a handful.

``LazyPattern`` has the methods of ``re.Pattern`` the project calls; the pattern is compiled once,
on the first call. Patterns matched by the thousand on a hot path stay ``re.compile``'d at import.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Union


class LazyPattern:
    __slots__ = ('_compiled', 'flags', 'pattern')

    def __init__(self, pattern: Union[str, bytes], flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: Optional[re.Pattern] = None

    @property
    def compiled(self) -> re.Pattern:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def match(self, *args: Any) -> Any:
        return self.compiled.match(*args)

    def fullmatch(self, *args: Any) -> Any:
        return self.compiled.fullmatch(*args)

    def search(self, *args: Any) -> Any:
        return self.compiled.search(*args)

    def sub(self, *args: Any) -> Any:
        return self.compiled.sub(*args)

    def findall(self, *args: Any) -> Any:
        return self.compiled.findall(*args)

    def __repr__(self) -> str:
        return f'LazyPattern({self.pattern!r}, {self.flags!r})'
