"""The networks: the Mainline DHT for handoff records, BitTorrent for carried sessions.

- endpoints.py: the Network a command joins: bootstrap nodes, test network or not (CCLINK_NETWORK), address scope
- krpc.py: KRPC messages (BEP 5, BEP 44) as bytes
- dht_client.py: cclink's own DHT client: getting and putting mutable items over one UDP socket
- record_store.py: publish, revoke and resolve handoff records, verified, with rollback protection (DHT or memory)
- seq_memory.py: per publisher key, the highest seq this machine has seen (the rollback guard)
- lt_session.py: libtorrent sessions: settings, joining the DHT, the routing-table cache
- bittorrent.py: seeding and fetching one file with libtorrent, peers kept to the DHT's scope
- agent.py: the background agent's client (every command), the kept list, what both sides share
- agent_server.py: the agent's process: its socket server (peers of this uid only), the key it holds
- transfer_files.py: the agent's carry directory, one private directory per carried session

Network modules may use wire/ (to verify what they fetch) and local/, never flows/ or cli/.
"""
