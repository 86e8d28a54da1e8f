"""dhtlab: a simulated Mainline DHT of thousands of KRPC nodes in one process, for tests and the bench.

Each node listens on a loopback address of its own (127.10.0.1 upwards) with
one UDP socket; one event loop in one thread serves them all. The nodes
answer BEP 5 (ping, find_node, get_peers, announce_peer) and BEP 44 mutable
items (get and put: tokens, signatures, seq and cas); their routing tables
are shaped like Kademlia's, a share of every table's entries point where
nothing answers, every node's replies wait out a round trip drawn from a
long-tailed distribution (some nodes much slower), datagrams are lost at a
given rate, and the lab's clock can be moved on by hours while nodes leave
(with their items) and join. All of it follows from a seed.

In Python, `with Lab(5000, dead=0.3, loss=0.02, seed=1) as lab:` and give
commands `lab.network`; from a shell, `python -m cclink.dev.dhtlab --help`.
docs/performance.md, "The DHT lab", says what it models and what it does not.

The modules:
- tables.py: the population of nodes, alive and dead, and the routing tables drawn from it
- node.py: one node's answers to KRPC queries, and the items it keeps
- loop.py: the sockets, the one selector, the held-back replies and the losses; the statistics
- lab.py: the Lab: building it from a seed, starting and stopping it, churn, introspection
- __main__.py: the command line
"""

from cclink.dev.dhtlab.lab import Lab, LabError

__all__ = ["Lab", "LabError"]
