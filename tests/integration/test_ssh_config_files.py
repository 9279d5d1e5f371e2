"""The user's ssh config under fire: generated configs, odd files, concurrent writers.

Every example goes through the real `install_include` (atomic write, lock, `ssh -G` check)
on a real file; ssh is the real OpenSSH client. Nothing touches the real ~/.ssh/config.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_config.ssh_user_config import add_include, include_line, remove_include
from sidecar.errors import UserFileError
from sidecar.layout import Layout
from sidecar.ssh.user_config import install_include, uninstall_include
from tests.helpers import REPO

pytestmark = pytest.mark.integration

WORK = Path(tempfile.mkdtemp(prefix="orch-fuzz-"))
MANAGED = WORK / "orch home" / "ssh" / "config"  # a space: the Include line must quote it
OTHER = WORK / "other.conf"
ALIAS = "orch-fuzz"


def setup_module() -> None:
    MANAGED.parent.mkdir(parents=True)
    MANAGED.write_text(
        f"Host {ALIAS}\n    HostName 127.0.0.1\n    Port 22\n    ControlMaster auto\n"
        "    StrictHostKeyChecking yes\n"
    )
    MANAGED.chmod(0o600)
    OTHER.write_text("User from-include\n")
    (WORK / "conf.d").mkdir()


def teardown_module() -> None:
    import shutil

    shutil.rmtree(WORK, ignore_errors=True)


LINE = include_line(str(MANAGED))
OPTIONS = [
    "User alice",
    "Port 2200",
    "Port=2201",
    "User = bob",
    "HostName example.invalid",
    "ForwardAgent no",
    "ServerAliveInterval 30",
    "Compression yes",
    "IdentityFile /nonexistent/id_x",
    "IdentitiesOnly no",
    "ControlMaster no",
    "ControlPath none",
    "ControlPersist 5",
    "StrictHostKeyChecking no",
    "UserKnownHostsFile /dev/null",
    "LocalForward 9999 localhost:1",
    "SendEnv LANG LC_*",
    "TCPKeepAlive no",
    "LogLevel ERROR",
    "BatchMode no",
]
HEADS = [
    "Host *",
    "Host orch-*",
    "Host !orch-fuzz *",
    "Host web? db",
    'Host "quoted"',
    "Match all",
    "Match host orch-fuzz",
    "Match user root",
    "Match originalhost a,b",
    "Match localuser nobody",
    "Match canonical",
    "Match final host x",
]
INCLUDES = ["Include /nonexistent/x", f"Include {OTHER}", f"Include {WORK}/conf.d/*"]
comment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"),
    max_size=30,
).map(lambda t: "#" + t)
indent = st.sampled_from(["", "  ", "    ", "\t"])
body_line = st.one_of(
    st.builds(lambda i, o: i + o, indent, st.sampled_from(OPTIONS)),
    st.sampled_from(HEADS),
    st.sampled_from(INCLUDES),
    st.builds(lambda i, c: i + c, indent, comment),
    st.sampled_from(["", "   "]),
    st.just(LINE.decode()),  # orch's own line, somewhere
)
config_text = st.builds(
    lambda lines, eols, final: _join(lines, eols, final),
    st.lists(body_line, max_size=14),
    st.lists(st.sampled_from(["\n", "\r\n"]), min_size=14, max_size=14),
    st.booleans(),
)
kind = st.sampled_from(["file", "file", "file", "missing", "read-only", "symlink"])


def _join(lines: list[str], eols: list[str], final_newline: bool) -> bytes:
    out = "".join(line + eol for line, eol in zip(lines, eols, strict=False))
    if lines and not final_newline:
        out = out[: -len(eols[len(lines) - 1])]
    return out.encode()


def _first_eol(data: bytes) -> bytes:
    for line in data.splitlines(keepends=True):
        if line.endswith(b"\n"):
            return b"\r\n" if line.endswith(b"\r\n") else b"\n"
    return b"\n"


def _ssh_g(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-G", "-F", str(path), ALIAS], capture_output=True, text=True, timeout=20
    )


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(original=config_text, file_kind=kind)
def test_generated_configs_keep_every_byte_and_still_parse(original: bytes, file_kind: str) -> None:
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        folder = Path(tmp)
        layout = Layout(folder / "orch")
        path = folder / "ssh" / "config"
        target = path
        path.parent.mkdir(mode=0o700)
        if file_kind == "symlink":
            target = folder / "dotfiles" / "ssh_config"
            target.parent.mkdir()
            target.write_bytes(original)
            path.symlink_to(target)
        elif file_kind != "missing":
            path.write_bytes(original)
        if file_kind == "read-only":
            path.chmod(0o400)
        before = None if file_kind == "missing" else original

        if file_kind == "read-only" and add_include(before, LINE) != before:
            with pytest.raises(UserFileError, match="read-only"):
                install_include(layout, MANAGED, path, alias=ALIAS)
            assert path.read_bytes() == original
            assert stat.S_IMODE(path.stat().st_mode) == 0o400
            return

        edit = install_include(layout, MANAGED, path, alias=ALIAS)
        result = path.read_bytes()
        assert edit.warnings == []  # ssh -G accepted the new file before it replaced the old
        assert result.splitlines()[0] == LINE
        assert result.splitlines().count(LINE) == 1
        # Bytes outside orch's line are unchanged (orch's line elsewhere moved to the top).
        assert remove_include(result, LINE) == remove_include(before, LINE)
        if before is not None and LINE not in before.splitlines():
            assert result == LINE + _first_eol(before) + before
        if file_kind == "symlink":
            assert path.is_symlink() and target.read_bytes() == result
        if file_kind == "missing":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # Idempotent: a second write changes nothing.
        assert install_include(layout, MANAGED, path, alias=ALIAS).changed is False
        assert path.read_bytes() == result
        assert not [p for p in path.parent.iterdir() if ".orch-" in p.name]  # no temp left


def test_ssh_g_resolves_orch_settings_despite_a_hostile_host_star(tmp_path: Path) -> None:
    path = tmp_path / "config"
    original = b"Host *\n  ControlMaster no\n  StrictHostKeyChecking no\n  Port 1\n"
    path.write_bytes(original)
    install_include(Layout(tmp_path / "orch"), MANAGED, path, alias=ALIAS)
    resolved = _ssh_g(path).stdout
    assert "controlmaster auto" in resolved and "port 22" in resolved
    assert "stricthostkeychecking true" in resolved
    assert path.read_bytes() == LINE + b"\n" + original
    uninstall_include(Layout(tmp_path / "orch"), MANAGED, path)
    assert path.read_bytes() == original


def test_first_touch_keeps_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"Host a\n  User b\n")
    layout = Layout(tmp_path / "orch")
    edit = install_include(layout, MANAGED, path, alias=ALIAS)
    assert edit.backup is not None and edit.backup.read_bytes() == b"Host a\n  User b\n"
    path.write_bytes(b"# changed later\n")
    install_include(layout, MANAGED, path, alias=ALIAS)
    assert edit.backup.read_bytes() == b"Host a\n  User b\n"  # never overwritten


WRITER = """
import sys
from pathlib import Path
from remote_config.ssh_config import HostEntry
from sidecar.layout import Layout
from sidecar.ssh.managed import write_managed_config
from sidecar.ssh.user_config import install_include
layout, user, n = Layout(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])
for round in range(3):
    entry = HostEntry(alias=f"orch-w{n}", hostname="127.0.0.1", port=2000 + round, user="u",
        identity_file="/k", known_hosts_file="/kh", host_key_alias=f"orch-w{n}",
        control_path="/tmp/cm/%C")
    write_managed_config(layout, [entry])
    install_include(layout, layout.ssh_config, user, alias=f"orch-w{n}")
"""


def test_concurrent_writers_lose_nothing_and_never_expose_a_partial_file(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "orch").ensure()
    user = tmp_path / "ssh_config"
    original = b"# mine\r\nHost *\r\n  User me"
    user.write_bytes(original)
    line = include_line(str(layout.ssh_config))
    expected = line + b"\r\n" + original
    seen_bad: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = user.read_bytes()
            if data not in (original, expected):
                seen_bad.append(data)
            managed = layout.ssh_config
            if managed.exists() and not managed.read_text().endswith("Compression no\n"):
                seen_bad.append(managed.read_bytes())

    watcher = threading.Thread(target=reader)
    watcher.start()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(layout.home), str(user), str(n)], env=env
        )
        for n in range(8)
    ]
    try:
        assert [p.wait(timeout=120) for p in procs] == [0] * 8
    finally:
        stop.set()
        watcher.join()
    assert seen_bad == []
    assert user.read_bytes() == expected
    text = layout.ssh_config.read_text()
    for n in range(8):
        assert f"Host orch-w{n}\n" in text  # no writer lost another's host
    assert text.count("Port 2002") == 8
