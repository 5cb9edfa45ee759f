"""The echo guard: how a listener tells the signals a bridge sent from new ones."""

from __future__ import annotations

from collections import Counter

_SentKey = tuple[str, str, str, str]  # domain, workflow id, signal name, input


class EchoGuard:
    """Shared by an :class:`SwfSignalBridge` and an :class:`SwfSignalListener`
    that bridge one execution both ways, so the listener does not publish
    again the signals the bridge sent::

        guard = EchoGuard()
        async with (
            SwfSignalBridge(bus, ..., echo_guard=guard),
            SwfSignalListener(bus, ..., echo_guard=guard),
        ): ...

    Without a shared guard there is no suppression: a listener publishes every
    signal in the history, those its bridge sent included.

    A signal counts as an echo when a bridge sent one with the same domain,
    workflow id, name and input. Only signals to executions that a listener
    watches are remembered, and each is forgotten once the listener sees it
    (or stops watching), so the guard does not grow without bound.

    A send that failed, or was cut off before SWF answered it (by the bridge's
    drain timeout, say), is forgotten at once. One cut off may still have
    reached SWF: the listener then publishes it as a new signal. That is the
    lesser harm: remembering it would make the listener swallow the next
    genuine signal with the same name and input.
    """

    def __init__(self) -> None:
        self._watched: Counter[tuple[str, str]] = Counter()
        self._sent: Counter[_SentKey] = Counter()

    @property
    def remembered(self) -> int:
        """How many sent signals wait for a listener to recognise them."""
        return self._sent.total()

    # The listener's side.

    def watch(self, domain: str, workflow_id: str) -> None:
        """A listener starts reading this execution's history."""
        self._watched[domain, workflow_id] += 1

    def unwatch(self, domain: str, workflow_id: str) -> None:
        """A listener stops; the last one to stop forgets what was sent there."""
        self._watched[domain, workflow_id] -= 1
        if self._watched[domain, workflow_id] <= 0:
            del self._watched[domain, workflow_id]
            for key in [k for k in self._sent if k[:2] == (domain, workflow_id)]:
                del self._sent[key]

    def is_echo(self, key: _SentKey) -> bool:
        """True (once per send) when a bridge sent this signal."""
        if self._sent.get(key, 0) <= 0:
            return False
        self._forget(key)
        return True

    # The bridge's side.

    def sending(self, key: _SentKey) -> bool:
        """Remember a signal about to be sent, if a listener watches its target."""
        if key[:2] not in self._watched:
            return False
        self._sent[key] += 1
        return True

    def not_sent(self, key: _SentKey) -> None:
        """The signal remembered by :meth:`sending` did not reach SWF, or its
        send was cut off before SWF answered."""
        self._forget(key)

    def _forget(self, key: _SentKey) -> None:
        self._sent[key] -= 1
        if self._sent[key] <= 0:
            del self._sent[key]
