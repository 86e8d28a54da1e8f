"""The lab itself: the tools it needs, its namespaces, bridge and veths, its DHT nodes, its two clients.

`preflight` finds `ip`, `iptables` (and `tc` for --rate) and tries them in a
scratch namespace; `Lab` builds the network the package docstring draws,
starts a DHT node in each node namespace, gives both clients a HOME and one
key, sets the loss (iptables) and rate (tc) rules, runs cclink in a client's
namespace, and removes everything again in `close`.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cclink.dev.machine import Machine
from cclink.dev.netlab import wormhole as magic_wormhole
from cclink.dev.transcript import write_transcript
from cclink.net.endpoints import Network, parse_bootstrap

MODULE = "cclink.dev.netlab"
PROG = f"python -m {MODULE}"  # how --help names the command
SUBNET = "10.199.0"
PUBLISHER_ADDRESS = f"{SUBNET}.2"
PICKER_ADDRESS = f"{SUBNET}.3"
WORMHOLE_ADDRESS = f"{SUBNET}.4"  # magic-wormhole's mailbox server and transit relay, with --wormhole
FIRST_NODE = 11
# pkarr's client starts from 4 routers; the lab's clients start from as many nodes.
BOOTSTRAP_NODES = 4
# publish waits up to ~60 s for the DHT and pickup up to ~70 s (with retries); beyond this a command hangs.
COMMAND_TIMEOUT = 180.0
NODE_START_TIMEOUT = 60.0


class LabError(Exception):
    """The lab could not be built or run."""


class CannotRun(LabError):
    """This machine cannot build the lab at all (not root, tools missing, no namespaces)."""


# --- running programs -------------------------------------------------------------------


def netlab_command(*args: str) -> list[str]:
    """The argv that runs this package's subcommand args (`node`, `copy-receive`, ...) with this interpreter."""
    return [sys.executable, "-m", MODULE, *args]


def find_tool(name: str) -> str | None:
    """A system tool's path; also looks in sbin, which a plain user's PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a setup command; LabError with its stderr when it fails."""
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def stop(popen: subprocess.Popen) -> None:
    """End a process the lab started: politely, then for good."""
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def say(message: str) -> None:
    print(f"netlab: {message}", file=sys.stderr, flush=True)


# --- what this machine can do -------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    ip: str
    iptables: str
    tc: str | None = None  # only for --rate


def preflight(tag: str, *, shaping: bool = False) -> Tools:
    """The tools the lab needs, after trying them in a scratch namespace; CannotRun says exactly what is missing."""
    if os.geteuid() != 0:
        raise CannotRun("not root: network namespaces, veth pairs and iptables need root")
    ip = find_tool("ip")
    if ip is None:
        raise CannotRun("`ip` (iproute2) is not installed")
    iptables = find_tool("iptables")
    if iptables is None:
        raise CannotRun("`iptables` is not installed (apt-get install iptables; scripts/test installs it)")
    probe = f"{tag}-probe"
    made = run([ip, "netns", "add", probe], check=False)
    if made.returncode != 0:
        raise CannotRun(f"`ip netns add` failed: {made.stderr.strip()}")
    try:
        veth = run([ip, "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"], check=False)
        if veth.returncode != 0:
            raise CannotRun(f"veth pairs cannot be made in a namespace: {veth.stderr.strip()}")
        rule = run([ip, "netns", "exec", probe, iptables, *loss_rule(50)], check=False)
        if rule.returncode != 0:
            raise CannotRun(f"iptables' statistic match does not work in a namespace: {rule.stderr.strip()}")
        tc = _preflight_shaping(ip, probe) if shaping else None
    finally:
        run([ip, "netns", "del", probe], check=False)
    return Tools(ip, iptables, tc)


def _preflight_shaping(ip: str, probe: str) -> str:
    tc = find_tool("tc")
    if tc is None:
        raise CannotRun("--rate needs `tc` (iproute2), which is not installed")
    shaped = run([ip, "netns", "exec", probe, tc, *rate_rule("p0", 100)], check=False)
    if shaped.returncode != 0:
        raise CannotRun(f"tc's token bucket filter (tbf) does not work in a namespace: {shaped.stderr.strip()}")
    return tc


def loss_rule(percent: float) -> list[str]:
    """iptables arguments that drop incoming UDP from the lab with the given probability."""
    return [
        "-A", "INPUT", "-p", "udp", "!", "-i", "lo",
        "-m", "statistic", "--mode", "random", "--probability", f"{percent / 100:.4f}",
        "-j", "DROP",
    ]  # fmt: skip


def rate_rule(device: str, mbit: float) -> list[str]:
    """tc arguments that let device send at most mbit megabits per second."""
    bytes_per_second = mbit * 1_000_000 / 8
    # A bucket of 10 ms of traffic, and never less than a few full-size packets.
    burst = max(16 * 1024, int(bytes_per_second / 100))
    return [
        "qdisc",
        "replace",
        "dev",
        device,
        "root",
        "tbf",
        "rate",
        f"{int(mbit * 1000)}kbit",
        "burst",
        str(burst),
        "latency",
        "100ms",
    ]


# --- the lab ------------------------------------------------------------------------------


@dataclass
class Client:
    """A machine of the lab that runs cclink: a namespace with an address, and in it a Machine (cclink.dev.machine).

    The machine's HOME is root/home; every command it runs is prefixed with `ip netns exec <namespace>`.
    """

    namespace: str
    address: str
    root: Path
    debug: bool = False
    machine: Machine = field(init=False)  # made by prepare()

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def project(self) -> Path:
        return self.home / "work" / "app"

    def prepare(self, network: Network, prefix: Sequence[str]) -> None:
        """The HOME, its project and its fake claude; cclink to run on network, behind prefix (the namespace)."""
        extra_env = {"PYTHONDONTWRITEBYTECODE": "1", **({"CCLINK_DEBUG": "1"} if self.debug else {})}
        self.machine = Machine(self.root, self.home.name, network, extra_env=extra_env, prefix=prefix)
        self.machine.project()

    def sessions_folder(self) -> Path:
        return self.machine.sessions_folder(self.project)

    def add_session(self, session_id: str, *, only: bool, size: int = 0) -> None:
        """Write a session file as Claude Code would, of about `size` bytes (the benchmarks' transcript) or a few lines.

        With `only`, the previous sessions go.
        """
        folder = self.sessions_folder()
        if only and folder.exists():
            shutil.rmtree(folder)
        if size:
            write_transcript(self.machine.session_file(self.project, session_id), str(self.project), session_id, size)
            return
        self.machine.add_session(self.project, session_id, summary="a netlab session")

    def forget_routing_table(self) -> None:
        shutil.rmtree(self.home / ".cache" / "cclink", ignore_errors=True)

    def last_launch(self) -> str:
        """The arguments of the fake claude's last start, joined by spaces."""
        launches = self.machine.launches()
        return " ".join(launches[-1].argv) if launches else ""


class NodeProcess:
    """One `netlab node` in its namespace, and the lines it prints."""

    def __init__(self, popen: subprocess.Popen[str], log: Path) -> None:
        assert popen.stdin is not None and popen.stdout is not None  # started with stdin=PIPE, stdout=PIPE
        self.popen = popen
        self.log = log
        self._stdin = popen.stdin
        self._stdout = popen.stdout
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def send(self, line: str) -> None:
        self._stdin.write(line + "\n")
        self._stdin.flush()

    def expect(self, word: str, deadline: float) -> str:
        """The rest of the next line that starts with `word`; LabError if the node dies or the deadline passes."""
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise LabError(f"a DHT node did not say '{word}' in time; its log: {self.log}") from None
            if line is None:
                raise LabError(f"a DHT node exited ({self.popen.wait()}): {self.log.read_text()[-2000:].strip()}")
            head, _, rest = line.partition(" ")
            if head == word:
                return rest


@dataclass(frozen=True)
class Outcome:
    """How one cclink command ended: exit code (None when killed), seconds, last stderr line."""

    code: int | None
    seconds: float
    error: str
    stdout: str = ""
    stderr: str = ""


class Lab:
    """The namespaces, the DHT nodes and the two clients; close() removes all of them."""

    def __init__(self, tools: Tools, tag: str, nodes: int, workdir: Path) -> None:
        self.tools = tools
        self.tag = tag
        self.size = nodes
        self.workdir = workdir
        self.bridge = f"{tag}-br"
        self.namespaces: list[str] = []
        self.node_namespaces = [f"{tag}-dht{i}" for i in range(1, nodes + 1)]
        self.nodes: list[NodeProcess] = []
        self.endpoints: list[str] = []
        self.publisher = Client(f"{tag}-a", PUBLISHER_ADDRESS, workdir / "a")
        self.picker = Client(f"{tag}-b", PICKER_ADDRESS, workdir / "b")
        self.wormhole: magic_wormhole.Wormhole | None = None
        self.wormhole_servers: magic_wormhole.Servers | None = None

    # building

    def build(self) -> None:
        self._add_namespace(self.bridge)
        self._ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.bridge, "link", "set", "br0", "up")
        hosts = [(ns, f"{SUBNET}.{FIRST_NODE + i}") for i, ns in enumerate(self.node_namespaces)]
        hosts += [(self.publisher.namespace, self.publisher.address), (self.picker.namespace, self.picker.address)]
        for namespace, address in hosts:
            self._add_host(namespace, address)

    def _add_host(self, namespace: str, address: str) -> None:
        """A namespace with eth0 = address/24, cabled to the bridge."""
        self._add_namespace(namespace)
        port = "v-" + namespace.rsplit("-", 1)[1]
        self._ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        self._ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
        self._ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        self._ip("-n", namespace, "link", "set", "eth0", "up")
        self._ip("-n", namespace, "link", "set", "lo", "up")

    def _add_namespace(self, name: str) -> None:
        # Noted first: a Ctrl-C during `ip netns add` must not leave it behind.
        self.namespaces.append(name)
        self._ip("netns", "add", name)

    def _ip(self, *args: str) -> None:
        run([self.tools.ip, *args])

    def in_namespace(self, namespace: str, argv: Sequence[str]) -> list[str]:
        return [self.tools.ip, "netns", "exec", namespace, *argv]

    def start_swarm(self) -> None:
        """Start a node per DHT namespace and wait until each is up.

        Then introduce them all and wait until they have met.
        """
        for index, namespace in enumerate(self.node_namespaces, start=FIRST_NODE):
            log = self.workdir / f"{namespace}.log"
            argv = netlab_command("node", "--host", f"{SUBNET}.{index}", "--lab", self.tag)
            with open(log, "w") as stderr:
                popen = subprocess.Popen(
                    self.in_namespace(namespace, argv),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
                )  # fmt: skip
            self.nodes.append(NodeProcess(popen, log))
        deadline = time.monotonic() + NODE_START_TIMEOUT
        self.endpoints = [node.expect("ready", deadline) for node in self.nodes]
        for node in self.nodes:
            node.send("join " + ",".join(self.endpoints))
        for node in self.nodes:
            node.expect("joined", deadline)

    @property
    def network(self) -> Network:
        """The lab's DHT as its clients join it (once start_swarm has started it): a test network, a few nodes in."""
        return Network(parse_bootstrap(",".join(self.endpoints[:BOOTSTRAP_NODES])), test=True)

    def prepare_clients(self) -> None:
        """Both HOMEs, one key: `cclink init` on a, `cclink init --import` of it on b."""
        for client in (self.publisher, self.picker):
            client.prepare(self.network, self.in_namespace(client.namespace, []))
        for client, args in (
            (self.publisher, ["init", "--no-passphrase"]),
            (self.picker, ["init", "--no-passphrase", "--import", str(self.publisher.machine.key_file)]),
        ):
            outcome = self.cclink(client, args, timeout=60)
            if outcome.code != 0:
                raise LabError(f"cclink {' '.join(args)} failed in {client.namespace}: {outcome.error}")

    # running

    def set_loss(self, percent: float) -> None:
        """Drop incoming lab UDP with this probability in every endpoint namespace (see the package docstring)."""
        for namespace in self.namespaces:
            if namespace == self.bridge:
                continue
            iptables = self.in_namespace(namespace, [self.tools.iptables])
            run([*iptables, "-F", "INPUT"])
            if percent > 0:
                run([*iptables, *loss_rule(percent)])

    def set_rate(self, mbit: float) -> None:
        """Limit what each client sends into the lab to mbit megabits per second (the DHT nodes stay unlimited)."""
        assert self.tools.tc is not None  # preflight(shaping=True) found it
        for client in (self.publisher, self.picker):
            run(self.in_namespace(client.namespace, [self.tools.tc, *rate_rule("eth0", mbit)]))

    def tcp_copy(self, source: Path, destination: Path) -> float:
        """Seconds to copy source from the publisher to a new file on the picker over one TCP connection.

        Timed by the receiver, from the connection to the last byte written
        (not fsynced, as cclink does not fsync the session it places).
        """
        destination.unlink(missing_ok=True)
        receive = netlab_command("copy-receive", "--host", self.picker.address, "--out", str(destination))
        receiver = subprocess.Popen(
            self.in_namespace(self.picker.namespace, receive),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert receiver.stdout is not None  # started with stdout=PIPE
        try:
            port = receiver.stdout.readline().split()[-1:]
            if not port:
                raise LabError(f"the copy's receiver did not start: {receiver.communicate()[1].strip()}")
            target = f"{self.picker.address}:{port[0]}"
            send = netlab_command("copy-send", "--to", target, "--file", str(source))
            run(self.in_namespace(self.publisher.namespace, send), timeout=COMMAND_TIMEOUT)
            said, errors = receiver.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            stop(receiver)
        if receiver.returncode != 0 or not said.startswith("copied "):
            raise LabError(f"the TCP copy failed: {errors.strip() or said.strip()}")
        return float(said.split()[1])

    def start_wormhole(self, wormhole: magic_wormhole.Wormhole) -> None:
        """magic-wormhole's mailbox server and transit relay in a namespace of their own, unlimited like the DHT's."""
        namespace = f"{self.tag}-wh"
        self._add_host(namespace, WORMHOLE_ADDRESS)
        try:
            self.wormhole_servers = magic_wormhole.Servers(
                wormhole, WORMHOLE_ADDRESS, self.workdir, self.in_namespace(namespace, [])
            )
        except magic_wormhole.WormholeUnavailable as why:
            raise LabError(str(why)) from None
        self.wormhole = wormhole

    def wormhole_copy(self, source: Path, destination: Path) -> magic_wormhole.Transfer:
        """magic-wormhole: send source in the publisher's namespace, receive it into destination in the picker's."""
        assert self.wormhole is not None and self.wormhole_servers is not None  # start_wormhole ran
        try:
            return magic_wormhole.send_file(
                self.wormhole,
                self.wormhole_servers,
                source,
                destination,
                sender_prefix=self.in_namespace(self.publisher.namespace, []),
                receiver_prefix=self.in_namespace(self.picker.namespace, []),
            )
        except magic_wormhole.WormholeUnavailable as why:
            raise LabError(str(why)) from None

    def spawn(self, client: Client, args: Sequence[str], *, cwd: Path | None = None) -> subprocess.Popen:
        """Start cclink in the client's namespace with its HOME, stderr piped as text; the caller ends it."""
        return client.machine.spawn(*args, cwd=cwd, stdout=subprocess.DEVNULL)

    def cclink(
        self, client: Client, args: Sequence[str], *, cwd: Path | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> Outcome:
        """Run cclink in the client's namespace with its HOME; never raises for cclink's own failures."""
        started = time.monotonic()
        popen = client.machine.spawn(*args, cwd=cwd)
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return Outcome(None, time.monotonic() - started, f"no answer within {timeout:.0f} s (killed)")
        finally:
            # Also on Ctrl-C: the command must not outlive the lab.
            if popen.poll() is None:
                popen.kill()
                popen.communicate()
        error = (stderr.strip().splitlines() or [""])[-1]
        return Outcome(popen.returncode, time.monotonic() - started, error, stdout, stderr)

    # cleaning up

    def close(self) -> None:
        """Stop every process this lab started, delete its namespaces (and with them the veths); never raises."""
        for node in self.nodes:
            stop(node.popen)
        if self.wormhole_servers is not None:
            self.wormhole_servers.close()
        for namespace in reversed(self.namespaces):
            try:
                self._remove_namespace(namespace)
            except (subprocess.SubprocessError, OSError) as error:
                say(f"warning: could not delete namespace {namespace}: {error}")
        self.namespaces.clear()

    def _remove_namespace(self, namespace: str) -> None:
        # Anything still inside (say, a child of a killed command) was started by this lab.
        for pid in run([self.tools.ip, "netns", "pids", namespace], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        result = run([self.tools.ip, "netns", "del", namespace], check=False)
        if result.returncode != 0 and "No such file" not in result.stderr:
            say(f"warning: could not delete namespace {namespace}: {result.stderr.strip()}")
