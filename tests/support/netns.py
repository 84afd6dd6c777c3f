"""Several hosts on one machine: Linux network namespaces joined by veth pairs to one bridge.

    test process (this namespace) 10.X.Y.254 ─┐
    host "data"   10.X.Y.1  ──────────────────┤ bridge (in a namespace of its own)
    host "a"      10.X.Y.2  ──────────────────┤
    host "b"      10.X.Y.3  ──────────────────┘

Every address is private to the machine: the bridge lives in its own namespace and the only
link into this one is the test's own veth. A host is partitioned by taking its port on the
bridge down: its packets go nowhere and nothing is told (connections stall, as behind a
failed switch, rather than fail); healing brings the port back and TCP resends what waited.
Made with `ip` (iproute2) as root; where that cannot be done, `Network()` raises with the reason.

A host's unix sockets are still shared (the file system is), so a service a partition must cut
off is reached over TCP on its host's address.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


class NamespacesUnavailable(RuntimeError):
    """This machine cannot make the hosts (not root, no iproute2, no veth)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NamespacesUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    port_on_bridge: str
    """The veth end on the bridge: down is this host partitioned."""

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Network:
    def __init__(self, hosts: Sequence[str]) -> None:
        if os.geteuid() != 0:
            raise NamespacesUnavailable("network namespaces need root (ip netns add)")
        if shutil.which("ip") is None:
            raise NamespacesUnavailable("iproute2's `ip` is not installed")
        self.tag = secrets.token_hex(2)  # interface names have at most 15 characters
        # A random /24 in 10.200-249.x: two test runs at once on one machine must not share one.
        self.prefix = f"10.{random.randint(200, 249)}.{random.randint(0, 255)}"
        self.switch = f"wh{self.tag}-switch"
        self.hosts: dict[str, Host] = {}
        self._root_link = f"wh{self.tag}r"
        self._namespaces: list[str] = []
        try:
            self._make(hosts)
        except BaseException:
            self.close()
            raise

    @property
    def test_address(self) -> str:
        """The test process's own address on the bridge."""
        return f"{self.prefix}.254"

    def _make(self, hosts: Sequence[str]) -> None:
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for n, name in enumerate(hosts, start=1):
            namespace = f"wh{self.tag}-{name}"
            self._add_namespace(namespace)
            inside, port = f"wh{self.tag}h{n}", f"wh{self.tag}s{n}"
            self._cable(port, inside, namespace, f"{self.prefix}.{n}")
            self.hosts[name] = Host(name, namespace, f"{self.prefix}.{n}", port)
        # The test process's own cable: its end stays in this namespace.
        port = f"wh{self.tag}s0"
        _ip("link", "add", self._root_link, "type", "veth", "peer", "name", port)
        _ip("link", "set", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("addr", "add", f"{self.test_address}/24", "dev", self._root_link)
        _ip("link", "set", self._root_link, "up")

    def _add_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")

    def _cable(self, port: str, inside: str, namespace: str, address: str) -> None:
        _ip("link", "add", port, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")

    def partition(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[host].port_on_bridge, "down")

    def heal(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[host].port_on_bridge, "up")

    def close(self) -> None:
        """Remove every namespace (their interfaces go with them) and the test's own cable."""
        with contextlib.suppress(NamespacesUnavailable):
            _ip("link", "del", self._root_link)
        for namespace in reversed(self._namespaces):
            with contextlib.suppress(NamespacesUnavailable):
                _ip("netns", "del", namespace)
        self._namespaces.clear()
