"""sidecar/jobs/aws.py: throttling is retried (bounded), nothing else; each error maps once."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from sidecar.errors import AuthenticationFailed, NotFound, OrchError, Unreachable, UsageError
from sidecar.jobs import aws


def _client_error(code: str, message: str = "msg", op: str = "RunTask") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "BASE_DELAY_S", 0.0)


async def test_throttling_is_retried_then_succeeds() -> None:
    calls: list[int] = []

    def fn(**kw: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _client_error("ThrottlingException", "Rate exceeded")
        return "ok"

    assert await aws.call_with_retry(fn, "ecs", "run_task", "batch") == "ok"
    assert len(calls) == 3


async def test_throttling_gives_up_after_the_bound() -> None:
    calls: list[int] = []

    def fn(**kw: Any) -> str:
        calls.append(1)
        raise _client_error("Throttling")

    with pytest.raises(OrchError, match="throttled by AWS") as err:
        await aws.call_with_retry(fn, "ecs", "describe_tasks", "batch")
    assert len(calls) == aws.MAX_ATTEMPTS
    assert err.value.hint


async def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def fn(**kw: Any) -> str:
        calls.append(1)
        raise _client_error("ServerException", "boom")

    with pytest.raises(OrchError, match=r"AWS ecs run_task failed \(ServerException: boom\)"):
        await aws.call_with_retry(fn, "ecs", "run_task", "batch")
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (
            _client_error("ClusterNotFoundException", "Cluster not found."),
            NotFound,
            "orch backend init batch",
        ),
        (_client_error("AccessDeniedException", "no"), AuthenticationFailed, "ecs:RunTask"),
        (_client_error("ExpiredTokenException"), AuthenticationFailed, "refresh"),
        (_client_error("InvalidParameterException", "bad subnet"), UsageError, "[backends.batch]"),
        (NoCredentialsError(), AuthenticationFailed, "aws configure"),
        (EndpointConnectionError(endpoint_url="https://ecs"), Unreachable, "network"),
    ],
)
def test_each_error_maps_to_one_orch_error(exc: Exception, kind: type, words: str) -> None:
    err = aws.aws_error(exc, "ecs", "run_task", "batch")
    assert type(err) is kind
    assert words in (err.hint or "")
    assert "Traceback" not in err.message


def test_missing_boto3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_boto3(name: str, *a: Any, **kw: Any) -> Any:
        if name == "boto3":
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_boto3)
    with pytest.raises(OrchError) as err:
        aws.boto3_module()
    assert "orch[aws]" in (err.value.hint or "")


def test_sidecar_start_does_not_import_boto3() -> None:
    import subprocess
    import sys

    code = (
        "import sys, sidecar.app, sidecar.cli.main, sidecar.jobs.backend, "
        "remote_config.fargate; print('boto3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
