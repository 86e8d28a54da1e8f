"""A testnet (cclink.dev.testnet) is a test network, and machines (cclink.dev.machine) on it say so to cclink."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cclink.dev.machine import Machine
from cclink.dev.testnet import Testnet
from cclink.net.endpoints import PUBLIC, Network


@pytest.mark.e2e
def test_a_testnet_is_a_test_network_and_its_export_line_says_so() -> None:
    with Testnet(1) as net:
        line = net.export_line()
        port = net.port
        network = net.network

    assert line == f"export CCLINK_NETWORK=test CCLINK_BOOTSTRAP=127.0.0.1:{port}"
    assignments = dict(word.split("=", 1) for word in shlex.split(line)[1:])
    assert Network.from_environment(assignments) == network == Network((("127.0.0.1", port),), test=True)


def test_a_machine_on_a_test_network_runs_cclink_with_both_variables(tmp_path: Path) -> None:
    network = Network((("127.0.0.1", 7000),), test=True)

    env = Machine(tmp_path, "laptop", network).env

    assert env["CCLINK_NETWORK"] == "test" and env["CCLINK_BOOTSTRAP"] == "127.0.0.1:7000"
    assert Network.from_environment(env) == network


def test_a_machine_is_on_the_public_dht_unless_told_otherwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCLINK_NETWORK", "test")  # the caller's own settings never reach the machine
    monkeypatch.setenv("CCLINK_BOOTSTRAP", "127.0.0.1:7000")

    env = Machine(tmp_path, "laptop").env

    assert env["CCLINK_NETWORK"] == "public"
    assert Network.from_environment(env) == PUBLIC
