"""The embedded local machine with the real OpenSSH client, rsync and the orch CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import port_is_free, run_orch, wait_port

pytestmark = pytest.mark.integration


def _ssh(
    orch_home: Path, *remote: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", str(orch_home / "ssh" / "config"), *extra, "orch-local", "--", *remote],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def up(orch_home: Path, project: Path):
    result = run_orch("up", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    yield info
    run_orch("down", cwd=project)


def test_up_runs_commands_through_real_openssh(up: dict, orch_home: Path) -> None:
    assert up["state"] == "running"
    host, _port = up["address"].split(":")
    assert host == "127.0.0.1"
    result = _ssh(orch_home, 'echo "$HOME|$USER"; echo err >&2; exit 3')
    assert result.returncode == 3
    home, user = result.stdout.strip().split("|")
    assert Path(home) == orch_home / "machines" / "local" / "home"
    assert user
    assert result.stderr.strip().endswith("err")
    # The user's own ~/.ssh/config is never read: the managed file is given with -F.
    assert "StrictHostKeyChecking yes" in (orch_home / "ssh" / "config").read_text()


def test_second_up_is_a_noop_that_says_so(up: dict, project: Path) -> None:
    again = run_orch("up", cwd=project)
    assert again.returncode == 0
    assert "already running" in again.stdout
    status = json.loads(run_orch("status", "--json", cwd=project).stdout)
    assert status["machine"]["pid"] == up["pid"]


def test_state_files_are_private(up: dict, orch_home: Path) -> None:
    assert (orch_home.stat().st_mode & 0o777) == 0o700
    for key in (
        orch_home / "keys" / "id_ed25519",
        orch_home / "machines" / "local" / "host_ed25519_key",
        orch_home / "ssh" / "known_hosts",
    ):
        assert (key.stat().st_mode & 0o777) == 0o600, key
    pinned = (orch_home / "ssh" / "known_hosts").read_text()
    host_pub = (orch_home / "machines" / "local" / "host_ed25519_key.pub").read_text().split()[1]
    assert pinned.startswith("orch-local ssh-ed25519 ") and host_pub in pinned


def test_rsync_copies_a_tree_through_the_local_machine(
    up: dict, orch_home: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for i in range(40):
        f = src / f"d{i % 4}" / f"file {i}.bin"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(os.urandom(512 + i * 97))
    (src / "unicodé ✓.txt").write_text("ünïcode\n")
    assert _ssh(orch_home, "mkdir -p work").returncode == 0
    rsync = subprocess.run(
        [
            "rsync",
            "-az",
            "--delete",
            "-e",
            f"ssh -F {orch_home / 'ssh' / 'config'}",
            f"{src}/",
            "orch-local:work/copy/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rsync.returncode == 0, rsync.stderr
    remote = orch_home / "machines" / "local" / "home" / "work" / "copy"
    assert _tree_digest(remote) == _tree_digest(src)


def test_binary_stdin_round_trip(up: dict, orch_home: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    result = subprocess.run(
        ["ssh", "-F", str(orch_home / "ssh" / "config"), "orch-local", "cat"],
        input=payload,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout == payload


def test_sftp_put_and_get(up: dict, orch_home: Path, tmp_path: Path) -> None:
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(100_000))
    batch = f"put {local} up.bin\nget up.bin {tmp_path / 'back.bin'}\n"
    result = subprocess.run(
        ["sftp", "-F", str(orch_home / "ssh" / "config"), "-b", "-", "orch-local"],
        input=batch,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()


def test_orch_ssh_runs_a_command(up: dict, project: Path) -> None:
    result = run_orch("ssh", "--", "echo", "via-orch-ssh", "$((6*7))", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "via-orch-ssh 42"


def test_down_frees_the_port_and_a_wrong_key_is_refused(
    up: dict, project: Path, orch_home: Path, tmp_path: Path
) -> None:
    port = int(up["address"].split(":")[1])
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    # Offer only the wrong key (IdentitiesOnly), with orch's pinned host key.
    refused = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={orch_home / 'ssh' / 'known_hosts'}",
            "-o",
            "HostKeyAlias=orch-local",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(wrong),
            "-p",
            str(port),
            "127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr

    down = run_orch("down", cwd=project)
    assert down.returncode == 0, down.stderr
    assert port_is_free(port)
    status = json.loads(run_orch("status", "--json", cwd=project).stdout)
    assert status["machine"]["state"] == "stopped"


def test_kill_9_is_detected_and_up_works_again(up: dict, project: Path) -> None:
    pid = up["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
        if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
            break
        time.sleep(0.02)
    status = run_orch("status", "--json", cwd=project)
    machine = json.loads(status.stdout)["machine"]
    assert machine["state"] == "stopped"
    assert "died" in (machine["detail"] or "")
    again = run_orch("up", "--json", cwd=project)
    assert again.returncode == 0, again.stderr
    info = json.loads(again.stdout)
    assert info["state"] == "running" and info["pid"] != pid
    # The port is kept across restarts, so ssh configs and ControlPaths stay valid.
    assert info["address"] == up["address"]
    wait_port(int(info["address"].split(":")[1]))


def test_status_without_machine_and_exit_codes(orch_home: Path, project: Path) -> None:
    status = run_orch("status", cwd=project)
    assert status.returncode == 0
    assert "stopped" in status.stdout
    ssh = run_orch("ssh", "--", "true", cwd=project)
    assert ssh.returncode == 5
    assert "not running" in ssh.stderr and "orch up" in ssh.stderr
    assert "Traceback" not in ssh.stderr
    unknown = run_orch("up", "nosuch", cwd=project)
    assert unknown.returncode == 4
    assert "unknown machine 'nosuch'" in unknown.stderr


async def test_concurrent_up_and_down_in_one_process(orch_home: Path, project: Path) -> None:
    import asyncio

    from sidecar.app import Orchestrator

    first, second = Orchestrator(cwd=project), Orchestrator(cwd=project)
    try:
        infos = await asyncio.wait_for(asyncio.gather(first.up(), second.up()), timeout=30)
        assert {i.state for i in infos} == {"running"}
        assert infos[0].pid == infos[1].pid  # one server, the other call found it running
        assert sorted(str(i.detail) for i in infos).count("already running") == 1
        downs = await asyncio.wait_for(asyncio.gather(first.down(), second.down()), timeout=30)
        assert {d.state for d in downs} == {"stopped"}
    finally:
        await first.close()
        await second.close()
        await first.down()
