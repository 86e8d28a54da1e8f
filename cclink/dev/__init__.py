"""For trying cclink without the internet: a local DHT and a scripted demonstration.

- testnet.py: a DHT of libtorrent nodes on 127.0.0.1, for tests, the demo and offline use
- machine.py: a throwaway HOME with a stand-in claude that runs the real cclink (tests, demo, bench, netlab)
- demo.py: `cclink demo`, a whole handoff between two throwaway homes
"""
