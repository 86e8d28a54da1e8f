"""For trying cclink without the internet: a local DHT, a demonstration, a lossy lab network and a simulated DHT.

- testnet.py: a DHT of libtorrent nodes on 127.0.0.1, for tests, the demo and offline use
- machine.py: a throwaway HOME with a stand-in claude that runs the real cclink (tests, demo, bench, netlab)
- demo.py: `cclink demo`, a whole handoff between two throwaway homes
- transcript.py: a synthetic Claude Code transcript of a given size, for the carry benchmark and netlab --carry
- netlab/: `python -m cclink.dev.netlab`, publish and pickup (or --carry) across network namespaces with packet loss
- dhtlab/: `python -m cclink.dev.dhtlab`, a simulated Mainline DHT of thousands of nodes in one process
"""
