"""botocore errors become one orch error each (with what to set), and only throttling is
retried, a bounded number of times. Errors are real botocore exception objects."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.errors import (
    EXIT_CONFIG,
    CloudConfigError,
    CloudCredentialsError,
    CloudError,
)
from sidecar.machines.ec2 import aws as aws_mod

botocore_exc = pytest.importorskip("botocore.exceptions")


def client_error(code: str, op: str = "RunInstances", message: str = "nope") -> Exception:
    return botocore_exc.ClientError({"Error": {"Code": code, "Message": message}}, op)


def test_unauthorized_names_the_missing_action() -> None:
    err = aws_mod.translate(client_error("UnauthorizedOperation"), "ec2", "RunInstances", "r")
    assert isinstance(err, CloudCredentialsError)
    assert "ec2:RunInstances" in err.message and "ec2:RunInstances" in (err.hint or "")


@pytest.mark.parametrize("code", ["ExpiredToken", "RequestExpired"])
def test_expired_credentials(code: str) -> None:
    err = aws_mod.translate(client_error(code), "ec2", "X", "r")
    assert isinstance(err, CloudCredentialsError) and "expired" in err.message


def test_no_credentials_and_sso_expiry() -> None:
    err = aws_mod.translate(botocore_exc.NoCredentialsError(), "ec2", "X", "r")
    assert isinstance(err, CloudCredentialsError) and "AWS_PROFILE" in (err.hint or "")
    sso = aws_mod.translate(
        botocore_exc.TokenRetrievalError(provider="sso", error_msg="x"), "ec2", "X", "r"
    )
    assert "aws sso login" in (sso.hint or "")


def test_wrong_region_and_bad_values_are_config_errors() -> None:
    err = aws_mod.translate(
        botocore_exc.EndpointConnectionError(endpoint_url="https://ec2.xx-1.amazonaws.com"),
        "ec2",
        "DescribeInstances",
        "xx-1",
    )
    assert isinstance(err, CloudConfigError) and err.exit_code == EXIT_CONFIG
    assert "'xx-1'" in err.message
    opt = aws_mod.translate(client_error("OptInRequired"), "ec2", "X", "af-south-1")
    assert isinstance(opt, CloudConfigError) and "not enabled" in opt.message
    ami = aws_mod.translate(client_error("InvalidAMIID.NotFound"), "ec2", "X", "r")
    assert isinstance(ami, CloudConfigError)


class FlakyClient:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def describe_instances(self, **_kw: Any) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"Reservations": []}


def _aws_with(client: FlakyClient, sleeps: list[float]) -> aws_mod.Aws:
    aws = aws_mod.Aws("us-east-1", sleep=sleeps.append)
    aws._clients[("ec2", "us-east-1")] = client
    return aws


def test_throttling_is_retried_with_backoff_then_succeeds() -> None:
    sleeps: list[float] = []
    client = FlakyClient([client_error("RequestLimitExceeded"), client_error("Throttling")])
    assert _aws_with(client, sleeps).call_sync("ec2", "describe_instances") == {"Reservations": []}
    assert client.calls == 3 and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_throttling_retry_is_bounded() -> None:
    sleeps: list[float] = []
    client = FlakyClient([client_error("Throttling") for _ in range(10)])
    with pytest.raises(CloudError, match="kept throttling"):
        _aws_with(client, sleeps).call_sync("ec2", "describe_instances")
    assert client.calls == aws_mod.MAX_ATTEMPTS and len(sleeps) == aws_mod.MAX_ATTEMPTS - 1


def test_other_errors_are_not_retried() -> None:
    sleeps: list[float] = []
    client = FlakyClient([client_error("UnauthorizedOperation", "DescribeInstances")])
    with pytest.raises(CloudCredentialsError, match="ec2:DescribeInstances"):
        _aws_with(client, sleeps).call_sync("ec2", "describe_instances")
    assert client.calls == 1 and sleeps == []


def test_boto3_is_not_imported_by_the_cli_start_up() -> None:
    import subprocess
    import sys

    code = "import sys, sidecar.cli.main as m; m.build_parser(); print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
