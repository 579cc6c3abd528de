"""A fake uevent source for the worker engine: it never produces an event by itself."""

from __future__ import annotations

from typing import Any, Callable


class FakeUdev:
    """Takes the engine's callback as ``UdevMonitor`` does; a test hands it events directly."""

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callback = callback

    def start(self, loop: Any) -> None:
        pass

    def stop(self) -> None:
        pass
