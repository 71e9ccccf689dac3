"""A RabbitMQ cluster of three extra nodes on this machine, for failover tests.

The nodes are ``<prefix>1@localhost`` .. ``<prefix>3@localhost``, with AMQP ports ``base+1``..
``base+3`` and distribution ports 20000 higher, each with a data directory and a
``rabbitmq.conf`` of its own (the machine's ``/etc/rabbitmq/rabbitmq.conf`` pins the listener
to 5672, and its ``rabbitmq-env.conf`` names the shared node). They run as the ``rabbitmq``
user, so they share its Erlang cookie with ``rabbitmqctl``. The shared node at 5672 is never
touched: every command here names one of the extra nodes with ``-n``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class ClusterError(RuntimeError):
    pass


def _as_rabbitmq(args: list[str], env: dict | None = None, timeout: float = 60, check: bool = True,
                 background: Path | None = None) -> str:
    """Run a RabbitMQ script as the rabbitmq user (its HOME holds the Erlang cookie), without
    pipes: the script's helper processes can outlive it and would hold a pipe open."""
    user = pwd.getpwnam("rabbitmq")
    full_env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": user.pw_dir, "LANG": "C.UTF-8",
                "ERL_EPMD_ADDRESS": "127.0.0.1", **(env or {})}
    as_root = os.geteuid() == 0

    def demote():  # pragma: no cover - runs in the child
        os.setsid()
        if as_root:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    if background is not None:  # started, not waited for: a server runs until stopped
        with open(background, "wb") as out:
            subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=full_env, cwd=user.pw_dir, preexec_fn=demote)
        return ""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, cwd=user.pw_dir, preexec_fn=demote)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise ClusterError(f"{' '.join(args)} did not finish within {timeout:g} s") from None
        out.seek(0)
        text = out.read().decode(errors="replace")
    if check and code != 0:
        raise ClusterError(f"{' '.join(args)} failed ({code}): {text.strip()[-2000:]}")
    return text


class Node:
    def __init__(self, name: str, port: int, base: Path):
        self.name, self.port = name, port
        self.node = f"{name}@localhost"
        self.dir = base / name
        self.dist_port = port + 20000

    def url(self, vhost: str = "", user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    @property
    def env(self) -> dict:
        d = self.dir
        return {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def prepare(self) -> None:
        user = pwd.getpwnam("rabbitmq")
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "cluster_partition_handling = ignore\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[].\n")
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        """Start the node's Erlang VM and RabbitMQ in the background (its output in ``dir/out``)."""
        _as_rabbitmq([SERVER], self.env, background=self.dir / "out")

    def output(self) -> str:
        path = self.dir / "out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        return _as_rabbitmq([CTL, "-n", self.node, *args], self.env, timeout=timeout, check=check)

    def await_startup(self, timeout: float = 90) -> None:
        """Wait until RabbitMQ runs on the node (a node just started is not yet known to epmd,
        and ``await_startup`` gives up at once on a node it cannot find)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", "--timeout", "10", timeout=30)
                return
            except ClusterError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"{self.node} did not start: {exc}\n{self.output()}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        """Stop the whole node (the Erlang VM too)."""
        self.ctl("stop", timeout=60, check=False)


class Cluster:
    """Three nodes joined into one cluster; ``nodes[0]`` is the one the others joined."""

    def __init__(self, prefix: str = "gbt", base_port: int = 5680, base: Path | None = None):
        self.base = Path(base or tempfile.mkdtemp(prefix=f"{prefix}cluster-"))
        self.base.chmod(0o755)  # the nodes run as the rabbitmq user
        self.nodes = [Node(f"{prefix}{i}", base_port + i, self.base) for i in (1, 2, 3)]

    def urls(self, vhost: str = "", user: str = "guest", password: str = "guest") -> str:
        return ";".join(n.url(vhost, user, password) for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.stop()  # a node left over by an interrupted run
            node.prepare()
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.await_startup()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app")
            node.await_startup()
        status = first.ctl("cluster_status", "--formatter", "json")
        missing = [n.node for n in self.nodes if n.node not in status.split('"running_nodes"', 1)[-1]]
        if missing:
            raise ClusterError(f"nodes not running in the cluster: {missing}: {status}")

    def running(self, node: Node) -> bool:
        return node.ctl("status", timeout=30, check=False).find("Runtime") >= 0

    def stop(self) -> None:
        """Stop every node and remove their data directories."""
        for node in self.nodes:
            node.stop()
        deadline = time.monotonic() + 30
        for node in self.nodes:
            pid_file = node.dir / "pid"
            while pid_file.exists() and time.monotonic() < deadline:
                try:
                    os.kill(int(pid_file.read_text().strip()), 0)
                except (ProcessLookupError, ValueError):
                    break
                time.sleep(0.2)
        shutil.rmtree(self.base, ignore_errors=True)
