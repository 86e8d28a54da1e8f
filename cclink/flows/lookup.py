"""Where pickup looks, and which handoff it takes: the keys to look up, all at once, and the newest for this machine.

With no key named, a pickup looks under one's own key, each paired device's
key, and each device's item for this machine (wire/device_items.py). With a
key named, it looks under that key, and, for a paired device, under its
item for this machine too. Of what it finds it takes the newest handoff this
machine can open; `pickup --wait` polls the same keys for one newer than the
last picked up here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from cclink import text
from cclink.errors import CannotDecrypt, CclinkError, NetworkError, NotFound, Rollback, WireError
from cclink.flows.environment import Environment
from cclink.flows.ui import UI, Progress
from cclink.local import threads
from cclink.net.record_store import RecordStore, Resolved, Revocation
from cclink.wire import agecrypt, device_items, payload
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import Payload

# pickup --wait polls the DHT gently: often at first (the publisher is usually about to publish), then less.
WAIT_FIRST_POLL = 2.0
WAIT_BACKOFF = 1.5
WAIT_LONGEST_POLL = 30.0

# own: one's own key; asked: the key named on the command line; device: a paired device's key;
# item: a device's item for this machine.
Kind = Literal["own", "asked", "device", "item"]


@dataclass(frozen=True)
class Source:
    """A key to look up, and what to call its publisher: a device's or contact's name, None for one's own key.

    For a device's item for this machine (wire/device_items.py), the key is
    the pairwise one, item its identity (which revokes a burnt item), and
    device the device's own key.
    """

    key: PublicKey
    kind: Kind
    name: str | None = None
    item: Identity | None = None
    device: PublicKey | None = None

    @property
    def publisher(self) -> PublicKey:
        """Who published what is found here: the device, for its item."""
        return self.device or self.key

    @property
    def takes_pin(self) -> bool:
        """Whether a PIN handoff found here is for this machine: under one's own key or the key asked for, as it
        always was (the PIN is asked for later); under a device's key it was meant for someone else."""
        return self.kind in ("own", "asked")


@dataclass(frozen=True)
class Found:
    """The handoff chosen, where it was found, and, when it was opened to see whether it is for this machine, what
    it holds."""

    source: Source
    resolved: Resolved
    opened: tuple[Payload, agecrypt.Identity] | None = None
    notes: tuple[str, ...] = ()


def own_sources(identity: Identity, env: Environment) -> list[Source]:
    """One's own key, then each paired device's, then each device's item for this machine.

    A device holding this very key is looked up once, and has no item.
    """
    own = identity.public_key
    devices = [device for device in env.contacts.devices() if device.key != own]
    items = [(device, device_items.item_from(device.key, identity)) for device in devices]
    return [
        Source(own, "own"),
        *(Source(device.key, "device", device.name) for device in devices),
        *(Source(item.public_key, "item", device.name, item, device.key) for device, item in items),
    ]


def named_sources(publisher: PublicKey, identity: Identity | None, env: Environment) -> list[Source]:
    """The key asked for, and when it is a paired device's, its item for this machine."""
    if identity is not None and publisher == identity.public_key:
        return [Source(publisher, "own")]
    contact = env.contacts.find(publisher.z32)
    asked = Source(publisher, "asked", contact.name if contact is not None else None)
    if identity is None or contact is None or not contact.is_device:
        return [asked]
    item = device_items.item_from(publisher, identity)
    return [asked, Source(item.public_key, "item", contact.name, item, publisher)]


def _one_key(sources: Sequence[Source]) -> bool:
    """Whether the lookup is for one key (with its item for this machine): its own answer stands when nothing
    under it opens here, as a lookup of that key alone."""
    return len(sources) == 1 or sources[0].kind == "asked"


def _label(source: Source) -> str:
    """A source among one's own key and devices: its name, or `your key`."""
    if source.item is not None:
        return f"{source.name} (its item for this machine)"
    return source.name or "your key"


def _whose(source: Source) -> str:
    """`beta's handoffs`, `the handoff beta left for this machine`: what a failed lookup was for."""
    if source.item is not None:
        return f"the handoff {source.name} left for this machine"
    return f"{_label(source)}'s handoffs"


def who(sources: Sequence[Source]) -> str:
    """`your key and laptop, desk`: whose handoffs are looked up, for progress lines and errors."""
    if _one_key(sources):
        return sources[0].name or sources[0].key.fingerprint
    return "your key and " + ", ".join(_label(source) for source in sources[1:] if source.item is None)


def find(sources: list[Source], identity: Identity | None, ui: UI, env: Environment) -> Found:
    """The handoff to pick up: under the one key, or the newest for this machine under one's own and devices' keys."""
    if len(sources) == 1:
        return Found(sources[0], _resolve(sources[0], identity, ui, env))
    with ui.progress(f"Looking up {who(sources)} on the DHT") as shown:
        looked_up = _look_up_all(sources, lambda source: env.records.newest(source.key, lambda d: _retrying(shown, d)))
    if _one_key(sources):
        return _newest_under_asked(sources, looked_up, identity, env.clock())
    return _newest_for_me(sources, looked_up, identity, env.clock())


def _retrying(shown: Progress, delay: float) -> None:
    shown.update(f"DHT unreachable; retrying in {delay:.0f}s")


def _resolve(source: Source, identity: Identity | None, ui: UI, env: Environment) -> Resolved:
    """The active handoff under one key; with nothing under one's own key and no devices, say how to pair."""
    publisher = source.key
    with ui.progress(f"Looking up {publisher.fingerprint} on the DHT") as shown:
        found = env.records.newest(publisher, on_retry=lambda d: _retrying(shown, d))
    if found is None and identity is not None and publisher == identity.public_key:
        # Two machines with different keys is the usual reason: each looks under its own.
        raise NotFound(
            f"no handoff is published under {publisher.display}, your key; if it was published on another machine, "
            "pair the two once: run `cclink pair` here and `cclink pair CODE` with the code it shows on the other "
            "machine, then publish again (or pick up with the publisher's key: `cclink pickup PUBKEY`)"
        )
    return env.records.active(publisher, found)


Looked = Resolved | Revocation | CclinkError | None


def _look_up_all(sources: list[Source], look_up: Callable[[Source], Resolved | Revocation | None]) -> list[Looked]:
    """What look_up found under every source, all looked up at once; a CclinkError stands for its lookup."""
    return threads.at_once([functools.partial(look_up, source) for source in sources], CclinkError)


@dataclass(frozen=True)
class _Sorted:
    """What was looked up, sorted: handoffs for this machine, sources whose handoff is not, lookups that failed."""

    mine: list[Found]
    others: list[Source]
    failed: list[tuple[Source, CclinkError]]

    def newest(self, now: float) -> Found:
        """The newest live handoff for this machine, failing that the newest expired one (refused later)."""
        live = [found for found in self.mine if not found.resolved.record.is_expired(now)] or self.mine
        chosen = max(live, key=_newness)
        notes = tuple(f"{_whose(source)} could not be looked up: {error.message}" for source, error in self.failed)
        return Found(chosen.source, chosen.resolved, chosen.opened, notes)


def _sorted(sources: list[Source], looked_up: list[Looked], identity: Identity | None) -> _Sorted:
    mine: list[Found] = []
    others: list[Source] = []
    failed: list[tuple[Source, CclinkError]] = []
    for source, result in zip(sources, looked_up, strict=True):
        if isinstance(result, CclinkError):
            failed.append((source, result))
        elif isinstance(result, Resolved):
            found = _for_me(source, result, identity)
            mine.extend([found] if found is not None else [])
            others.extend([source] if found is None else [])
    return _Sorted(mine, others, failed)


def _newest_for_me(sources: list[Source], looked_up: list[Looked], identity: Identity | None, now: float) -> Found:
    """The newest live handoff this machine can open; failing that the newest expired one, which is then refused."""
    found = _sorted(sources, looked_up, identity)
    if not found.mine:
        raise _nothing_for_me(sources, found.others, found.failed)
    return found.newest(now)


def _newest_under_asked(sources: list[Source], looked_up: list[Looked], identity: Identity | None, now: float) -> Found:
    """As _newest_for_me; when nothing opens here, the asked key's own answer, as when it is looked up alone (its
    error, or its handoff, which decrypting then explains)."""
    found = _sorted(sources, looked_up, identity)
    if found.mine:
        return found.newest(now)
    asked, result = sources[0], looked_up[0]
    if isinstance(result, CclinkError):
        raise result
    return Found(asked, RecordStore.active(asked.key, result))


def _for_me(source: Source, resolved: Resolved, identity: Identity | None) -> Found | None:
    """The handoff as found, opened when it opens with this machine's key; None when it is not for this machine."""
    record = resolved.record
    if record.pin_salt is not None:
        return Found(source, resolved) if source.takes_pin else None
    if identity is None:
        return None
    try:
        opened = payload.open_payload(record.blob, identity.age_identity())
    except (CannotDecrypt, WireError):
        return None
    return Found(source, resolved, (opened, identity.age_identity()))


def _nothing_for_me(
    sources: list[Source], others: list[Source], failed: list[tuple[Source, CclinkError]]
) -> CclinkError:
    """Why nothing was picked up: the first lookup that failed, handoffs addressed elsewhere, or nothing at all."""
    if others:
        names = ", ".join(_label(source) for source in others)
        return NotFound(
            f"there are handoffs under {names}, but none addressed to this machine: they were shared with someone "
            "else, or published before the machines were paired (publish again there)"
        )
    if failed:
        return failed[0][1]
    return NotFound(f"no handoff is published under {who(sources)}")


def wait_for_new_handoff(
    sources: list[Source], identity: Identity | None, ui: UI, env: Environment, seconds: float
) -> Found:
    """The first handoff for this machine newer than the last one picked up here, polled for up to seconds.

    Newer is per key: above the seq of the last handoff picked up under it.
    Until one appears, an unreachable DHT or an older item (a replay, or
    nodes that lost the newest) only means waiting on.
    """
    deadline = env.clock() + seconds
    delay = WAIT_FIRST_POLL
    waiting = f"Waiting for a new handoff from {who(sources)} (Ctrl-C stops)"
    with ui.progress(waiting) as shown:
        while True:
            looked_up = _look_up_all(sources, lambda source: env.records.newest(source.key, retry_for=0))
            _raise_refusal(sources, looked_up)
            answered = not all(isinstance(result, NetworkError | Rollback) for result in looked_up)
            shown.update(waiting if answered else f"{waiting}; the DHT did not answer, trying again")
            found = _new_for_me(sources, looked_up, identity, env)
            if found is not None:
                return found
            remaining = deadline - env.clock()
            if remaining <= 0:
                raise NotFound(f"no new handoff from {_shown(sources)} appeared within {text.format_duration(seconds)}")
            env.sleep(min(delay, remaining))
            delay = min(delay * WAIT_BACKOFF, WAIT_LONGEST_POLL)


def _raise_refusal(sources: list[Source], looked_up: list[Looked]) -> None:
    """For the one key asked for, a record refused (malformed, badly signed) ends the wait as it ends a pickup.

    Among one's own and devices' keys (and for an item) it is skipped like any handoff not for this machine.
    """
    result = looked_up[0]
    if _one_key(sources) and isinstance(result, CclinkError) and not isinstance(result, NetworkError | Rollback):
        raise result


def _new_for_me(
    sources: list[Source], looked_up: list[Looked], identity: Identity | None, env: Environment
) -> Found | None:
    """The newest live handoff above the last one picked up under its key: for this machine, or, when none is, under
    the one key asked for (which is then opened as any pickup of it is)."""
    new: list[Found] = []
    unopened: list[Found] = []
    for source, result in zip(sources, looked_up, strict=True):
        if not isinstance(result, Resolved) or result.seq <= env.pickups.floor(source.key.raw):
            continue
        if result.record.is_expired(env.clock()):
            continue
        found = _for_me(source, result, identity)
        new.extend([found] if found is not None else [])
        if found is None and _one_key(sources) and source is sources[0]:
            unopened.append(Found(source, result))
    return max(new or unopened, key=_newness, default=None)


def _newness(found: Found) -> tuple[int, int]:
    return found.resolved.record.created_at, found.resolved.seq


def _shown(sources: list[Source]) -> str:
    if _one_key(sources):
        return sources[0].name or sources[0].key.display
    return who(sources)
