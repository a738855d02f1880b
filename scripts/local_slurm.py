#!/usr/bin/env python3
"""A real single-node SLURM cluster on this machine, for tests and benchmarks of the SLURM profile.

    python scripts/local_slurm.py start /tmp/cluster [--partition local]   # prints the state as JSON
    python scripts/local_slurm.py stop /tmp/cluster

`start` installs Debian's slurm-wlm and munge when they are missing (root and apt-get needed), writes
slurm.conf into the folder, links it to /etc/slurm/slurm.conf (the job-step plugin clears SLURM_* in
jobs, so SLURM_CONF alone is not enough), and starts munged, slurmctld and slurmd in the foreground as
children, recording their PIDs in <folder>/cluster.json. `stop` ends exactly those PIDs and removes
the link. Service managers are not used: containers and CI runners rarely have one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SLURM_CONF_LINK = Path("/etc/slurm/slurm.conf")
MUNGE_SOCKET_DIR = Path("/run/munge")
PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")


class ClusterUnavailable(RuntimeError):
    """This machine cannot host the local cluster (not root, no apt-get, install failed)."""


def unavailable_reason() -> str | None:
    """Why a local cluster cannot be started here, or None when it can."""
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (to install slurm-wlm/munge and run their daemons)"
    if not all(Path(path).exists() for path in DAEMONS) and shutil.which("apt-get") is None:
        return "slurm-wlm/munge are not installed and apt-get is not available to install them"
    if SLURM_CONF_LINK.exists() and not SLURM_CONF_LINK.is_symlink():
        return f"{SLURM_CONF_LINK} is a real SLURM configuration; refusing to replace it"
    return None


def install_packages(log: Path) -> None:
    if all(Path(path).exists() for path in DAEMONS):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log.open("a") as handle:
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
            result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
            if result.returncode != 0:
                raise ClusterUnavailable(f"{' '.join(command)} failed (exit {result.returncode}); see {log}")


def node_memory_mb() -> int:
    """85% of the machine's memory: slurmd drains a node that declares more than it has."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.85)
    raise RuntimeError("/proc/meminfo has no MemTotal line")


def slurm_conf(folder: Path, partition: str, cpus: int, memory_mb: int, default: bool = True) -> str:
    return "\n".join([
        "ClusterName=localcluster",
        "SlurmctldHost=localhost",
        "SlurmUser=root",
        "AuthType=auth/munge",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/run/slurmctld.pid",
        f"SlurmdPidFile={folder}/run/slurmd.pid",
        f"SlurmctldLogFile={folder}/log/slurmctld.log",
        f"SlurmdLogFile={folder}/log/slurmd.log",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        f"NodeName=localhost CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={partition} Nodes=ALL Default={'YES' if default else 'NO'} MaxTime=INFINITE State=UP",
        "",
    ])


def _spawn(command: list[str], log: Path, **kwargs) -> int:
    handle = log.open("ab")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
    handle.close()
    return process.pid


def _munge_running() -> bool:
    return (MUNGE_SOCKET_DIR / "munge.socket.2").exists() and subprocess.run(
        ["munge", "-n"], capture_output=True).returncode == 0


def _wait_for_idle_node(timeout_s: float, folder: Path) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
        state = result.stdout.strip()
        if result.returncode == 0 and state.startswith("idle"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the local SLURM node did not become idle in {timeout_s:.0f} s "
                       f"(last state {state!r}); see {folder}/log/")


def start(folder: Path, partition: str = "local", cpus: int | None = None, default: bool = True) -> dict:
    """default=False: the partition is not the cluster's default, so a job must name it."""
    reason = unavailable_reason()
    if reason:
        raise ClusterUnavailable(reason)
    folder = folder.resolve()
    for name in ("state", "spool", "run", "log"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    install_packages(folder / "log" / "apt.log")

    state = {"folder": str(folder), "partition": partition, "pids": {}, "hostname": socket.gethostname()}
    state_file = folder / "cluster.json"

    def record():
        state_file.write_text(json.dumps(state, indent=1))

    try:
        conf = folder / "slurm.conf"
        conf.write_text(slurm_conf(folder, partition, cpus or os.cpu_count() or 1, node_memory_mb(), default))
        SLURM_CONF_LINK.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF_LINK.is_symlink():
            SLURM_CONF_LINK.unlink()
        SLURM_CONF_LINK.symlink_to(conf)
        state["conf_link"] = str(SLURM_CONF_LINK)
        record()

        if not _munge_running():  # one munged per machine: reuse a running one, never stop it
            MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
            state["pids"]["munged"] = _spawn(["/usr/sbin/munged", "--foreground"],
                                             folder / "log" / "munged.out", user="munge", group="munge")
            record()
            deadline = time.monotonic() + 20
            while not _munge_running():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"munged did not answer in 20 s; see {folder}/log/munged.out")
                time.sleep(0.2)
        state["pids"]["slurmctld"] = _spawn(["/usr/sbin/slurmctld", "-D", "-i"],
                                            folder / "log" / "slurmctld.out")
        record()
        # the host is not called localhost: -N makes slurmd answer for the configured node name
        state["pids"]["slurmd"] = _spawn(["/usr/sbin/slurmd", "-D", "-N", "localhost"],
                                         folder / "log" / "slurmd.out")
        record()
        _wait_for_idle_node(60, folder)
    except BaseException:
        stop(folder)
        raise
    return state


def _alive(pid: int) -> bool:
    """Running, and not a zombie (an orphan's zombie lingers where PID 1 does not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(folder: Path) -> list[int]:
    """End exactly the daemons `start` recorded (slurmd first) and remove the configuration link."""
    folder = folder.resolve()
    state_file = folder / "cluster.json"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    stopped = []
    for name in ("slurmd", "slurmctld", "munged"):
        pid = state["pids"].get(name)
        if pid is None or not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
        stopped.append(pid)
    link = Path(state.get("conf_link", SLURM_CONF_LINK))
    if link.is_symlink() and Path(os.readlink(link)) == folder / "slurm.conf":
        link.unlink()
    state["stopped"] = stopped
    state_file.write_text(json.dumps(state, indent=1))
    return stopped


def _reap(pid: int) -> None:
    """Collect a daemon that is our own child, so it does not linger as a zombie that looks alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("folder", type=Path, help="where slurm.conf, state, logs and cluster.json live")
    parser.add_argument("--partition", default="local")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the node (default: all)")
    parser.add_argument("--not-default", action="store_true",
                        help="the partition is not the default one: every job must name it")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(json.dumps(start(args.folder, args.partition, args.cpus, not args.not_default), indent=1))
        else:
            print(json.dumps({"stopped": stop(args.folder)}))
    except ClusterUnavailable as error:
        print(f"local SLURM cluster unavailable: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
