"""The peers' own installs under the git-ignored .bench-venv, one per set of peers that agree on a
Redis client, created on first use: the peers never become our dependencies, and no peer holds
another back to an old redis-py.

    .bench-venv/arq/      arq 0.28, which requires redis-py < 6
    .bench-venv/peers/    SAQ, Celery, RQ, Taskiq with taskiq-redis, Dramatiq: current releases
                          on the current redis-py
    .bench-venv/bullmq/   BullMQ and ioredis for Node, by `npm ci` from bench/peers/bullmq's lockfile

Each install leaves a marker named after what it installed (its package list, or the lockfile), so
changing a pin or the lockfile reinstalls once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from app.config import PROJECT_ROOT

PEER_HOME = PROJECT_ROOT / ".bench-venv"
PEERS_DIR = Path(__file__).resolve().parent / "peers"
BULLMQ_DIR = PEERS_DIR / "bullmq"
BULLMQ_HOME = PEER_HOME / "bullmq"


@dataclass(frozen=True, slots=True)
class PythonPeers:
    """One virtual environment and the peer scripts that run on its interpreter."""

    name: str
    packages: tuple[str, ...]
    scripts: tuple[str, ...]
    distributions: tuple[str, ...]
    """What the versions note names (redis-py is always added)."""

    @property
    def python(self) -> Path:
        return PEER_HOME / self.name / "bin" / "python"

    def install(self) -> None:
        home = PEER_HOME / self.name
        marker = home / f".installed-{zlib.crc32(' '.join(self.packages).encode()):08x}"
        if marker.exists():
            return
        print(f"bench: installing {', '.join(self.packages)} into {home}", file=sys.stderr, flush=True)
        if not self.python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
        subprocess.run([str(self.python), "-m", "pip", "install", "--quiet", *self.packages], check=True)
        marker.touch()


# arq 0.28 (the latest) requires redis-py < 6, so it has an environment of its own.
ARQ = PythonPeers("arq", ("arq>=0.28,<0.29",), ("arq_peer.py",), ("arq",))
# The others at the releases the scripts were last checked against, capped below the next
# release that may move their APIs (the next minor for 0.x). `celery[redis]` brings kombu's
# Redis transport with the `packaging` it imports.
CURRENT = PythonPeers(
    "peers",
    ("saq>=0.26.4,<0.27", "celery[redis]>=5.7,<6", "rq>=3.0,<4", "taskiq>=0.13,<0.14",
     "taskiq-redis>=1.2.4,<2", "dramatiq[redis]>=2.2,<3", "redis>=8.2,<9"),
    ("saq_peer.py", "celery_peer.py", "rq_peer.py", "taskiq_peer.py", "dramatiq_peer.py"),
    ("saq", "celery", "rq", "taskiq", "taskiq-redis", "dramatiq"),
)
PYTHON_PEERS = (ARQ, CURRENT)
BULLMQ_SCRIPT = "bullmq/bullmq_peer.cjs"


def install_bullmq() -> Path:
    """`npm ci` of bench/peers/bullmq's package-lock.json in a copy under .bench-venv (npm installs
    beside the package.json it reads); the node_modules it made."""
    manifests = ("package.json", "package-lock.json")
    digest = zlib.crc32(b"".join((BULLMQ_DIR / name).read_bytes() for name in manifests))
    marker = BULLMQ_HOME / f".installed-{digest:08x}"
    if not marker.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: BullMQ, a peer, runs on Node")
        print(f"bench: installing BullMQ (npm ci) into {BULLMQ_HOME}", file=sys.stderr, flush=True)
        BULLMQ_HOME.mkdir(parents=True, exist_ok=True)
        for name in manifests:
            shutil.copyfile(BULLMQ_DIR / name, BULLMQ_HOME / name)
        # No install scripts: the one there (msgpackr-extract) only builds what its prebuilt
        # optional package already carries.
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=BULLMQ_HOME, check=True, stdout=sys.stderr)  # stdout carries the table only
        marker.touch()
    return BULLMQ_HOME / "node_modules"


@dataclass(frozen=True, slots=True)
class Peers:
    """Where each peer script runs: its environment's interpreter, or Node with BullMQ's modules."""

    node: Path
    node_modules: Path

    def argv(self, script: str, *args: str) -> list[str]:
        if script.endswith(".cjs"):
            return [str(self.node), str(PEERS_DIR / script), *args]
        python = next(p.python for p in PYTHON_PEERS if script in p.scripts)
        return [str(python), str(PEERS_DIR / script), *args]

    def environ(self) -> dict[str, str]:
        """What the scripts need to find their imports: `common` beside them, BullMQ's modules."""
        return {"PYTHONPATH": str(PEERS_DIR), "NODE_PATH": str(self.node_modules)}


async def install() -> Peers:
    """Every peer installed (the first time: a few minutes, the three installs side by side)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: BullMQ, a peer, runs on Node")
    _, node_modules = await asyncio.gather(asyncio.gather(*(asyncio.to_thread(p.install) for p in PYTHON_PEERS)),
                                           asyncio.to_thread(install_bullmq))
    return Peers(Path(node), node_modules)


async def versions(peers: Peers) -> str:
    """Each peer's version and its Redis client's: "arq 0.28.0 on redis-py 5.3.1; …"."""
    found = [await _python_versions(p) for p in PYTHON_PEERS]
    node = await asyncio.create_subprocess_exec(str(peers.node), "--version", stdout=asyncio.subprocess.PIPE)
    out, _ = await node.communicate()
    found.append(f"bullmq {_node_version(peers, 'bullmq')} on ioredis {_node_version(peers, 'ioredis')}, "
                 f"Node {out.decode().strip().removeprefix('v')}")
    return "; ".join(found)


async def _python_versions(peers: PythonPeers) -> str:
    script = ("import importlib.metadata as m, sys; "
              "print(', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:-1]), 'on redis-py', m.version('redis'))")
    proc = await asyncio.create_subprocess_exec(str(peers.python), "-c", script, *peers.distributions, "redis",
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode().strip()


def _node_version(peers: Peers, package: str) -> str:
    manifest = json.loads((peers.node_modules / package / "package.json").read_text())
    return str(manifest["version"])
