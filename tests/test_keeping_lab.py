"""The agent's keeping (flows/keeping.py) on the DHT lab, where nodes drop items after BEP 44's 2 hours (issue 17).

The keeping runs in this process over cclink's own DHT client, on the lab's
simulated clock, as the agent's worker runs it on the system's: each
simulated hour the lab churns, the test looks the handoffs up as a pickup
would, and the keeping does whatever is due.
"""

from __future__ import annotations

import time

import pytest

from cclink.dev.dhtlab import Lab
from cclink.flows.keeping import Keeping, signed_item
from cclink.net.record_store import DhtItems, RecordStore, Resolved
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.agent_protocol import Item
from cclink.wire.keys import Identity
from cclink.wire.record import Record, new_record

HOURS = 24  # the handoff's TTL, in the hours the test steps through
ITEM_LIFETIME = 2 * 3600  # BEP 44: a node may drop an item not put again within 2 hours
# Issue 16's churn: half the nodes replaced over the day, here a step an hour.
REPLACED_PER_HOUR = 1 - 0.5 ** (1 / HOURS)


def publish(lab: Lab, identity: Identity, now: float) -> tuple[Record, int]:
    """Publish a handoff of identity's with a day's TTL through cclink's client: the record and its seq."""
    record = new_record(identity, b"sealed payload", ttl=HOURS * 3600, now=now)
    return record, RecordStore.on_dht(lab.network, SeqMemory.in_memory()).publish(identity, record).seq


def resolvable(lab: Lab, identity: Identity, seq: int) -> bool:
    """Whether a pickup on another machine finds this very handoff."""
    found = RecordStore.on_dht(lab.network, SeqMemory.in_memory()).newest(identity.public_key, retry_for=0)
    return isinstance(found, Resolved) and found.seq == seq


@pytest.mark.e2e
def test_a_kept_handoff_stays_resolvable_through_its_ttl_and_one_left_alone_is_lost() -> None:
    kept, alone = Identity.generate(), Identity.generate()
    # Nodes that answer at once, on ports free at the time: the test is about who holds what, not how fast.
    lab = Lab(200, dead=0.0, median_rtt=0.002, slow=0.0, port=0, seed=31, item_lifetime=ITEM_LIFETIME)
    with lab:
        start = time.time()

        def clock() -> float:
            """The agent's clock, moved on with the lab's."""
            return start + lab.now()

        # A jitter of 0.5 makes every wait its nominal length: a put each hour, or sooner.
        keeping = Keeping(DhtItems(lab.network), lambda items: None, jitter=lambda: 0.5)
        record, kept_seq = publish(lab, kept, clock())
        # What the agent is handed (net/agent.AgentKeeper): the item as put, signed again, and the record's expiry.
        signed = signed_item(kept, packet.record_message(kept.public_key, record.to_json()), kept_seq)
        handed = Item(kept.public_key.raw, signed.seq, signed.signature, signed.value, record.expires_at)
        assert keeping.keep(handed, clock()) is None
        _, alone_seq = publish(lab, alone, clock())

        found: dict[int, tuple[bool, bool]] = {}
        for hour in range(1, HOURS):
            lab.advance(1, replace=REPLACED_PER_HOUR)
            found[hour] = (resolvable(lab, kept, kept_seq), resolvable(lab, alone, alone_seq))
            keeping.work(clock)
        lab.advance(1)
        left = keeping.next_due(clock())

    assert clock() >= record.expires_at and left is None  # expired, so no longer kept
    assert [hour for hour, (kept_found, _) in found.items() if not kept_found] == []
    # Left alone, the handoff is gone once the nodes' 2 hours have run out, though most of its holders live on.
    assert found[1][1] and not any(alone_found for hour, (_, alone_found) in found.items() if hour >= 3)
