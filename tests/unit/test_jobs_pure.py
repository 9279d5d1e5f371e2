"""The pure part of remote jobs: names, command text, scripts (syntax), status parsing."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from remote_config import job_scripts as js
from remote_config.jobs import (
    MAX_COMMAND_BYTES,
    Snapshot,
    StatusCache,
    command_text,
    jobs_from_snapshot,
    parse_env_assignments,
    parse_snapshot,
    tmux_session,
    tree_usage,
    validate_job_name,
)
from sidecar.cli.jobs_cmds import parse_run_args
from sidecar.errors import UsageError

BAD_NAMES = [
    "",
    "$(touch x)",
    "`id`",
    "a;b",
    "a'b",
    'a"b',
    "a\nb",
    "a b",
    "jöb",
    "-x",
    "--replace",
    ".",
    "..",
    ".hidden",
    "a/b",
    "a:b",
    "x" * 65,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_job_names_are_refused_with_a_clear_message(name: str) -> None:
    with pytest.raises(ValueError, match="invalid job name"):
        validate_job_name(name)


@pytest.mark.parametrize("name", ["vma-scrape", "train.v2", "_x", "A1", "x" * 64, "9-lives"])
def test_good_job_names(name: str) -> None:
    assert validate_job_name(name) == name


def test_tmux_session_names_are_one_to_one() -> None:
    # tmux would turn '.' into '_', making 'a.b' and 'a_b' collide.
    assert tmux_session("a.b") != tmux_session("a_b")
    assert "." not in tmux_session("train.v2.final")


NASTY_ARGS = [
    "$(touch pwned)",
    "`id`",
    "a;b",
    "it's",
    'say "hi"',
    "two\nlines",
    "sp ace",
    "ünï©ødé",
    "-n",
    "*",
    "~",
]


def test_argv_commands_are_quoted_word_for_word() -> None:
    text = command_text(["printf", "%s\\n", *NASTY_ARGS])
    assert shlex.split(text) == ["printf", "%s\\n", *NASTY_ARGS]


def test_a_string_command_is_kept_as_written() -> None:
    line = "cd ~/work/x && python scripts/trend_scrape.py --since '2024-01-01' | tee out.txt"
    assert command_text(line) == line


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ([], "empty"),
        ("echo a\x00b", "NUL"),
        ("echo \udcff", "UTF-8"),
        ("x" * (MAX_COMMAND_BYTES + 1), "limit"),
    ],
)
def test_commands_that_cannot_run_are_refused(command: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        command_text(command)  # type: ignore[arg-type]


def test_env_assignments() -> None:
    assert parse_env_assignments(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in (["A"], ["1A=x"], ["A-B=x"], ["A=\x00"]):
        with pytest.raises(ValueError):
            parse_env_assignments(bad)


# -- scripts ----------------------------------------------------------------------------------
def _all_scripts() -> dict[str, str]:
    wd = "~/work/my proj"
    return {
        "start": js.start_script("j.1", wd, "echo hi", {"K": "v a l'ue"}, replace=True),
        "restart": js.start_script("j.1", wd, None, replace=True),
        "status": js.status_script(wd),
        "stop": js.stop_script("j.1", wd, 2.5),
        "rm": js.rm_script("j.1", wd, purge=False),
        "purge": js.rm_script("j.1", wd, purge=True),
        "logs": js.logs_script("j.1", wd, 10, None, follow=False),
        "follow": js.logs_script("j.1", wd, 0, 20, follow=True),
        "reset": js.reset_script(),
    }


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_every_script_parses(shell: str) -> None:
    if not shutil.which(shell):
        pytest.skip(f"{shell} is not installed")
    for what, script in _all_scripts().items():
        check = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True)
        assert check.returncode == 0, f"{what}: {check.stderr}"


def test_heredoc_delivers_any_text_exactly(tmp_path) -> None:
    nasty = "line1\nORCH_EOF_x\n$(echo no)\n`id`\n'\"\\\n\tü\n"
    # A body holding the delimiter the first choice would use must get another delimiter.
    first = js.heredoc("f", nasty).splitlines()[0].split("'")[1]
    body = f"{nasty}{first}\n"
    script = js.heredoc(shlex.quote(str(tmp_path / "out")), body)
    subprocess.run(["sh", "-s"], input=script, text=True, check=True)
    assert (tmp_path / "out").read_text() == body


def test_env_script_quotes_values_and_sets_job_name() -> None:
    text = js.env_script("train", {"A": "x'; rm -rf ~ #", "PYTHONUNBUFFERED": "0"})
    out = subprocess.run(
        ["sh", "-c", text + 'printf "%s|%s|%s" "$A" "$PYTHONUNBUFFERED" "$ORCH_JOB"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "x'; rm -rf ~ #|0|train"


def test_remote_paths_expand_home_only() -> None:
    assert js.sh_remote_path("~/work/a b") == "\"$HOME\"/'work/a b'"
    assert js.sh_remote_path("/srv/$(x)") == "'/srv/$(x)'"
    with pytest.raises(ValueError):
        js.sh_remote_path("relative")


def test_attach_command_survives_any_login_shell() -> None:
    cmd = js.attach_command("train.v2")
    assert cmd.startswith("sh -c '") and cmd.count("'") == 2 and "\\" not in cmd
    assert "attach-session -t =train+v2" in cmd


# -- status parsing ----------------------------------------------------------------------------
NOW = 1_800_000_000
SNAPSHOT = f"""@now {NOW}
@boot B1
@files
run/meta:started={NOW - 100}
run/meta:boot=B1
run/meta:code=tree:111
run/meta:pagesize=4096
run/pid:500 9000 500
run/cmd.sh:python train.py \\
run/cmd.sh:  --epochs 3
ok/meta:started={NOW - 50}
ok/meta:boot=B1
ok/result:exit_code=0
ok/result:ended={NOW - 40}
bad/meta:started={NOW - 30}
bad/result:exit_code=137
bad/result:ended={NOW - 29}
halt/meta:started={NOW - 20}
halt/result:exit_code=130
halt/result:ended={NOW - 10}
halt/stop:{NOW - 11}
reboot/meta:started={NOW - 999}
reboot/meta:boot=B0
reboot/pid:500 9000 500
gone/meta:started={NOW - 99}
gone/meta:boot=B1
gone/pid:600 1234 600
reused/meta:started={NOW - 99}
reused/meta:boot=B1
reused/pid:501 1 501
new/meta:started={NOW - 1}
new/meta:boot=B1
new/cmd.sh:echo 0123
new/cmd.sh.cut:1
removed/run.log:not a job any more
@code tree:222
@proc
1 0 1000 0.0 1
500 1 100 50.0 9000
501 500 1000 25.5 9100
502 501 10 0.5 9200
503 1 77777 99.0 9300
@end
"""


def test_snapshot_states_memory_and_staleness() -> None:
    jobs = {j.name: j for j in jobs_from_snapshot(parse_snapshot(SNAPSHOT))}
    assert set(jobs) == {"run", "ok", "bad", "halt", "reboot", "gone", "reused", "new"}
    run = jobs["run"]
    assert run.state == "running" and run.pid == 500
    assert run.rss_bytes == (100 + 1000 + 10) * 4096  # the whole tree, not pid 503
    assert run.cpu_percent == 76.0
    assert run.duration_s == 100.0
    assert run.started == datetime.fromtimestamp(NOW - 100, tz=UTC)
    assert run.command == "python train.py \\\n  --epochs 3"
    assert run.code_version == "tree:111" and run.code_stale
    assert (jobs["ok"].state, jobs["ok"].exit_code, jobs["ok"].duration_s) == ("succeeded", 0, 10)
    assert (jobs["bad"].state, jobs["bad"].exit_code) == ("failed", 137)
    assert "signal 9" in (jobs["bad"].detail or "")
    assert (jobs["halt"].state, jobs["halt"].exit_code) == ("stopped", 130)
    assert jobs["reboot"].state == "lost" and "rebooted" in (jobs["reboot"].detail or "")
    assert jobs["gone"].state == "lost" and "gone" in (jobs["gone"].detail or "")
    # pid 501 is alive but started at another time: a reused pid, not our wrapper.
    assert jobs["reused"].state == "lost"
    assert jobs["new"].state == "running" and jobs["new"].detail == "starting"
    assert jobs["new"].command == "echo 0123…"  # status shows the start of long commands
    assert not jobs["ok"].code_stale and jobs["ok"].rss_bytes is None


def test_a_running_job_whose_tmux_server_is_gone_says_so() -> None:
    # The wrapper's parent was tmux (pid 77); it now has another parent (init).
    text = SNAPSHOT.replace("run/pid:500 9000 500", "run/pid:500 9000 500 77")
    jobs = {j.name: j for j in jobs_from_snapshot(parse_snapshot(text))}
    assert jobs["run"].state == "running" and "tmux server is gone" in (jobs["run"].detail or "")


def test_ps_fallback_reports_kib() -> None:
    text = (
        f"@now {NOW}\n@boot none\n@files\nj/meta:started={NOW}\nj/pid:7 0 7\n@ps\n 7 1 2048 1.5\n"
    )
    (job,) = jobs_from_snapshot(parse_snapshot(text))
    assert job.state == "running" and job.rss_bytes == 2048 * 1024


def test_an_empty_remote_has_no_jobs() -> None:
    assert jobs_from_snapshot(parse_snapshot(f"@now {NOW}\n@boot x\n@end\n")) == []


def test_tree_lines_are_the_whole_trees_totals() -> None:
    # The machine sums each running job's tree: one @tree line per wrapper, no per-process lines.
    text = (
        f"@now {NOW}\n@boot B1\n@files\n"
        f"run/meta:started={NOW - 5}\nrun/meta:boot=B1\nrun/meta:pagesize=16384\n"
        "run/pid:500 9000 500 77\n"
        f"old/meta:started={NOW - 5}\nold/meta:boot=B1\nold/pid:600 8000 600 77\n"
        "@tree\n500 77 300 12.5 9000 7\n600 77 40 1.0 8123 1\n@end\n"
    )
    jobs = {j.name: j for j in jobs_from_snapshot(parse_snapshot(text))}
    run = jobs["run"]
    assert (run.state, run.pid, run.detail) == ("running", 500, None)
    assert (run.rss_bytes, run.cpu_percent) == (300 * 16384, 12.5)
    # pid 600 now belongs to a process started at another time: not the job's wrapper.
    assert jobs["old"].state == "lost" and jobs["old"].rss_bytes is None


def test_a_same_line_is_filled_from_the_cache_with_every_file() -> None:
    first = (
        f"@now {NOW}\n@boot B1\n@files\nj/key:500,9000,500,77,|\n"
        f"j/pid:500 9000 500 77\nj/meta:started={NOW - 5}\nj/meta:boot=B1\n"
        "j/cmd.sh:python train.py\n@tree\n500 77 10 0.0 9000 2\n@end\n"
    )
    cache = StatusCache()
    snap = parse_snapshot(first)
    cache.apply(snap)
    (job,) = jobs_from_snapshot(snap)
    assert cache.keys() == {"j": "500,9000,500,77,|"}
    again = parse_snapshot(
        first.split("@files\n")[0] + "@files\nj/same:1\n@tree\n500 77 20 0.0 9000 2\n"
    )
    cache.apply(again)
    (same,) = jobs_from_snapshot(again)
    assert (same.state, same.pid, same.command) == ("running", 500, "python train.py")
    assert same.rss_bytes == 20 * 4096 and job.rss_bytes == 10 * 4096
    # A "same" the cache cannot fill (a restarted reader) is no job rather than a wrong one.
    assert jobs_from_snapshot(_filled(StatusCache(), "@files\nj/same:1\n")) == []


def _filled(cache: StatusCache, text: str) -> Snapshot:
    snap = parse_snapshot(text)
    cache.apply(snap)
    return snap


def test_tree_usage_handles_cycles_and_missing_roots() -> None:
    snap = parse_snapshot("@proc\n1 2 5 1.0 0\n2 1 7 2.0 0\n")
    assert tree_usage(snap.procs, 1) == (12, 3.0)
    assert tree_usage(snap.procs, 99) == (0, 0.0)


# -- `orch run` argument splitting ----------------------------------------------------------
def _run_args(*words: str) -> argparse.Namespace:
    return argparse.Namespace(env=[], replace=False, json=False, machine=None, args=list(words))


def test_run_args_forms() -> None:
    argv = parse_run_args(_run_args("j", "--", "python", "-c", "print(1)"))
    assert (argv.name, argv.command) == ("j", ["python", "-c", "print(1)"])
    line = parse_run_args(_run_args("j", "echo hi; ls"))
    assert line.command == "echo hi; ls"
    # `-- "one word"` stays an argv of one word: never re-read by a shell.
    assert parse_run_args(_run_args("j", "--", "echo hi; ls")).command == ["echo hi; ls"]
    opts = parse_run_args(_run_args("j", "--replace", "-e", "A=1", "--env=B=2", "--", "-v"))
    assert opts.replace and opts.env == ["A=1", "B=2"] and opts.command == ["-v"]


@pytest.mark.parametrize("words", [(), ("j",), ("j", "--"), ("j", "--bogus", "x"), ("j", "--env")])
def test_run_args_errors(words: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        parse_run_args(_run_args(*words))
