"""netlab: publish and pick up a handoff across a lossy lab network.

Run as `.venv/bin/python -m cclink.dev.netlab --help` (root, `ip` and
`iptables`, and `tc` for --rate; run scripts/test once first: it makes .venv).

It builds a network in namespaces of its own, runs a small DHT there, and
measures how often `cclink` (publish) followed by `cclink pickup -y` works,
and how long it takes, at several packet-loss rates. With --carry MB the
publisher runs `cclink --carry` on a transcript of that size, which the
picker does not have: the session itself crosses the lab, peer to peer,
over the addresses and the DHT of a real network, and after each carry a
plain TCP copy of the same transcript takes the same path, for comparison.
--rate MBIT limits both clients' links to that speed (tc's token bucket).
With --wormhole, magic-wormhole then sends the same transcript too (issue
17's comparison; it runs from a virtual environment of its own, wormhole.py).

The lab (every name starts with the lab's tag, cclab<pid>):

  <tag>-br      a namespace holding one bridge, br0: the lab's "internet"
  <tag>-dht1..N one namespace per DHT node, 10.199.0.11.., each running
                `netlab node`: a cclink.dev.testnet.Testnet of one node bound
                to that address. A node per namespace gives every node its
                own address and its own packet filter, as on the real DHT.
  <tag>-a       the publisher, 10.199.0.2, with a HOME of its own
  <tag>-b       the picker, 10.199.0.3, with a HOME holding the same key
  <tag>-wh      with --wormhole only: magic-wormhole's mailbox server and
                transit relay, 10.199.0.4, its link unlimited like the nodes'

Both clients join the lab's DHT as a test network (CCLINK_NETWORK=test, and
CCLINK_BOOTSTRAP naming its first four nodes), on private addresses.

Each endpoint namespace reaches br0 through a veth pair. Loss is applied
with iptables in every endpoint namespace (nodes and both clients), on the
INPUT chain only, to UDP that does not come from lo: every packet that
crosses the lab is then dropped exactly once with probability P, in both
directions (a request is dropped where it arrives, so is its answer), and
"30 % loss" means what it says. Dropping on OUTPUT as well would drop each
packet twice (51 % for P = 30 %). Bridged frames do not traverse iptables
here (no br_netfilter), so the bridge itself stays lossless.

The modules:
- lab.py: the tools and their preflight, the namespaces, bridge and veths, the loss and rate rules, the clients
- trials.py: one handoff or carry trial and how it ended
- report.py: the trials of one loss rate, their spreads, and the table
- inside.py: what the lab runs inside its namespaces (a DHT node, the two ends of the plain TCP copy)
- wormhole.py: magic-wormhole for comparison: its virtual environment, its local servers, one timed transfer
- __main__.py: the command line, the run, signals and cleanup
"""
