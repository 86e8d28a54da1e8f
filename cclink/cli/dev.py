"""`cclink relay`, `testnet` and `demo`: a relay for others, and tools to try cclink locally."""

from __future__ import annotations

import signal

import typer

from cclink.cli.group import app


@app.command("relay")
def relay_command(
    listen: str = typer.Option(
        "127.0.0.1:6881",  # pkarr's own relay listens on 6881 by default (its relay/src/config.rs)
        "--listen",
        metavar="HOST:PORT",
        help="Where to accept HTTP requests (default: this machine only, on pkarr's relay port); port 0 picks one.",
    ),
) -> None:
    """Run a pkarr HTTP relay to the DHT, for machines that cannot reach it, until interrupted."""
    from cclink.cli import console
    from cclink.net import relay_server
    from cclink.net.endpoints import Network
    from cclink.net.record_store import DhtItems

    network = Network.from_environment()
    endpoint = relay_server.parse_listen(listen)

    def ready(url: str) -> None:
        console.out(f"export CCLINK_RELAYS={url}", flush=True)
        wildcard = endpoint[0] in ("0.0.0.0", "::")
        where = " (put this machine's address in place of the wildcard)" if wildcard else ""
        console.say(
            f"A pkarr relay to the DHT of {network.scope.value} at {url}{where}; "
            "run the line above on the machines that use it. Ctrl-C stops."
        )

    relay_server.serve(DhtItems(network), endpoint, ready, lambda line: console.say(f"relay: {line}"))
    console.say("Relay stopped.")


@app.command("testnet")
def testnet_command(
    nodes: int = typer.Option(8, "--nodes", help="How many DHT nodes to run."),
    port: int = typer.Option(0, "--port", help="Port of the first (bootstrap) node; 0 picks a free one."),
    ipv6: bool = typer.Option(False, "--ipv6", help="Listen on ::1 (IPv6) instead of 127.0.0.1."),
) -> None:
    """Run a local DHT on 127.0.0.1 (or ::1) until interrupted."""
    import threading

    from cclink.cli import console
    from cclink.dev.testnet import HOST, HOST6, Testnet

    stop = threading.Event()
    # Both signals only set the event: a KeyboardInterrupt could land anywhere,
    # even in the middle of printing the bootstrap line.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    host = HOST6 if ipv6 else HOST
    with Testnet(nodes, port, host) as net:
        console.out(net.export_line(), flush=True)
        console.say(
            f"{nodes} DHT node{'s' if nodes != 1 else ''} on {host}, a test network; "
            "run the line above in other shells. Ctrl-C stops."
        )
        # Short waits: a signal handler runs only when the main thread wakes.
        while not stop.wait(0.5):
            pass


@app.command("demo")
def demo_command() -> None:
    """Show a whole handoff on a local DHT, in throwaway homes."""
    from cclink.dev import demo

    demo.run()
