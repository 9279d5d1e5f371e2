"""How `orch logs -f` follows a Fargate job's CloudWatch stream: the forward token, the
pause between reads (short while lines flow, doubling while quiet, bounded), and the end
(one more read after the task stopped). The stream here is a list of scripted reads; the
same code runs against moto's Logs with a real task in tests/integration/test_fargate.py."""

from __future__ import annotations

from typing import Any

from sidecar.errors import NotFound
from sidecar.jobs.fargate_logs import Pacing, stream_events


class Script:
    """Answers reads from a list of (events, token) steps, recording the arguments and the
    pauses; `stops_after` reads the task is reported stopped."""

    def __init__(self, steps: list[Any], stops_after: int) -> None:
        self.steps = steps
        self.reads: list[dict[str, Any]] = []
        self.pauses: list[float] = []
        self.stops_after = stops_after

    async def read(self, args: dict[str, Any]) -> dict[str, Any]:
        self.reads.append(args)
        step = self.steps.pop(0) if self.steps else ([], None)
        if step == "missing":
            raise NotFound("log stream not found")
        events, token = step
        return {"events": [{"message": m} for m in events], "nextForwardToken": token}

    async def running(self) -> bool:
        return len(self.reads) < self.stops_after

    async def sleep(self, s: float) -> None:
        self.pauses.append(s)


async def _collect(script: Script, **kw: Any) -> str:
    out = []
    async for chunk in stream_events(
        script.read, script.running, sleep=script.sleep, pacing=Pacing(0.25, 2.0), **kw
    ):
        out.append(chunk)
    return "".join(out)


async def test_follow_reads_on_from_the_token_backs_off_while_quiet_and_ends_after_stop() -> None:
    script = Script(
        [
            "missing",  # the container has not started: no stream yet
            (["one"], "t1"),
            ([], "t1"),
            ([], "t1"),
            ([], "t1"),
            ([], "t1"),
            ([], "t1"),
            (["two\n", "three"], "t2"),
            ([], "t2"),
            ([], "t2"),  # the task has stopped by now: one more empty read ends it
        ],
        stops_after=9,
    )
    text = await _collect(script, tail=None, follow=True)
    assert text == "one\ntwo\nthree\n"
    assert script.reads[0] == {"startFromHead": True}
    assert script.reads[2:7] == [{"nextToken": "t1"}] * 5  # never re-reads what it has seen
    assert script.reads[8] == {"nextToken": "t2"}
    # Quiet: 0.5, then new lines: back to 0.25, then doubling to the 2 s bound.
    assert script.pauses[:8] == [0.5, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 0.25]
    assert max(script.pauses) == 2.0
    assert len(script.reads) == 10


async def test_without_follow_one_read_and_tail_asks_for_the_last_lines() -> None:
    script = Script([(["a", "b"], "t")], stops_after=0)
    assert await _collect(script, tail=2, follow=False) == "a\nb\n"
    assert script.reads == [{"startFromHead": False, "limit": 2}]
    assert script.pauses == []


async def test_tail_zero_follows_only_new_lines() -> None:
    script = Script([(["old"], "t1"), (["new"], "t2"), ([], "t2")], stops_after=2)
    assert await _collect(script, tail=0, follow=True) == "new\n"
    assert script.reads[1] == {"nextToken": "t1"}


async def test_a_stopped_task_with_no_stream_ends_after_two_reads() -> None:
    script = Script(["missing", "missing"], stops_after=0)
    assert await _collect(script, tail=None, follow=True) == ""
    assert len(script.reads) == 2
