"""The one door to AWS: boto3 clients built lazily, every call run off the event loop, a
bounded retry on throttling only, and every botocore error turned into one orch error that
says what to set (profile, environment variables, region, the missing IAM action).

boto3 is imported here and nowhere else, on the first call; without it the user is told to
install `orch[aws]`. Tests point the clients at moto's server with `AWS_ENDPOINT_URL`,
which boto3 reads itself: nothing here knows about tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from sidecar.errors import (
    CloudConfigError,
    CloudCredentialsError,
    CloudError,
    MissingDependency,
    OrchError,
)

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "EC2ThrottledException",
    }
)
MAX_ATTEMPTS = 5
EXPIRED = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
)
BAD_CREDENTIALS = frozenset(
    {"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"}
)
DENIED = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})
CREDENTIALS_HINT = (
    "set AWS_PROFILE (or aws_profile in orch.toml) to a configured profile, or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; check with: aws sts get-caller-identity"
)


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise MissingDependency(
            "EC2 machines need boto3, which is not installed",
            hint="install orch's AWS extra: pip install 'orch[aws]'",
        ) from None
    return boto3


class Aws:
    """boto3 clients for one profile; `await aws.call("ec2", "describe_instances", ...)`."""

    def __init__(
        self,
        region: str,
        profile: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.region = region
        self.profile = profile
        self._sleep = sleep
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        key = (service, region)
        if key not in self._clients:
            boto3 = _boto3()
            from botocore.config import Config

            if self._session is None:
                try:
                    self._session = boto3.session.Session(profile_name=self.profile)
                except Exception as exc:  # botocore.exceptions.ProfileNotFound
                    raise translate(exc, service, "Session", region) from None
            # botocore's own retries are off: `call` retries throttling, and only that.
            config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10)
            self._clients[key] = self._session.client(service, region_name=region, config=config)
        return self._clients[key]

    async def call(self, service: str, op: str, region: str | None = None, **kw: Any) -> Any:
        return await asyncio.to_thread(self.call_sync, service, op, region, **kw)

    def call_sync(self, service: str, op: str, region: str | None = None, **kw: Any) -> Any:
        region = region or self.region
        client = self.client(service, region)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return getattr(client, op)(**kw)
            except Exception as exc:
                if error_code(exc) in THROTTLING and attempt < MAX_ATTEMPTS:
                    # Exponential backoff with jitter: 0.5, 1, 2, 4 s (each drawn from [d/2, d]).
                    delay = 0.5 * 2 ** (attempt - 1)
                    self._sleep(delay * (0.5 + random.random() / 2))  # noqa: S311
                    continue
                raise translate(exc, service, _pascal(op), region) from None
        raise AssertionError("unreachable")


def _pascal(op: str) -> str:
    return "".join(part.capitalize() for part in op.split("_"))


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def translate(exc: BaseException, service: str, operation: str, region: str) -> OrchError:
    """One orch error, with what to do, for any botocore/boto3 exception."""
    if isinstance(exc, OrchError):
        return exc
    name = type(exc).__name__
    action = f"{service}:{getattr(exc, 'operation_name', None) or operation}"
    code = error_code(exc)
    text = _message(exc)
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return CloudCredentialsError("no AWS credentials were found", hint=CREDENTIALS_HINT)
    if name == "ProfileNotFound":
        return CloudCredentialsError(f"AWS profile not found: {text}", hint=CREDENTIALS_HINT)
    if name in ("TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"):
        return CloudCredentialsError(
            "the AWS SSO session has expired", hint="log in again: aws sso login", code=code
        )
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return CloudConfigError(
            f"cannot reach the AWS {service} endpoint in region {region!r}",
            hint="check `region` in orch.toml is a real region (e.g. us-east-1) and that "
            "this computer is online",
        )
    if code in EXPIRED:
        return CloudCredentialsError(
            "the AWS credentials have expired",
            hint="refresh them (aws sso login, or new temporary keys) and run the command again",
            code=code,
        )
    if code in BAD_CREDENTIALS:
        return CloudCredentialsError(
            f"AWS rejected the credentials ({code})", hint=CREDENTIALS_HINT, code=code
        )
    if code in DENIED:
        return CloudCredentialsError(
            f"the AWS credentials may not call {action}",
            hint=f"allow {action} in the IAM policy of these credentials "
            "(docs/ec2.md lists every action orch needs)",
            code=code,
        )
    if code == "OptInRequired":
        return CloudConfigError(
            f"region {region!r} is not enabled for this account",
            hint="enable it in the AWS console (Account → AWS Regions) or pick another region",
            code=code,
        )
    if code and code.startswith(
        (
            "InvalidAMIID",
            "InvalidSubnetID",
            "InvalidGroup",
            "InvalidParameterValue",
            "ParameterNotFound",
            "InvalidInstanceType",
            "Unsupported",
        )
    ):
        return CloudConfigError(
            f"AWS refused {action}: {text}",
            hint="check the ec2 machine's settings in orch.toml (ami, subnet_id, "
            "security_group_ids, instance_type, region)",
            code=code,
        )
    if code in THROTTLING:
        return CloudError(
            f"AWS kept throttling {action} after {MAX_ATTEMPTS} attempts",
            hint="wait a minute and try again",
            code=code,
        )
    return CloudError(f"AWS {action} failed: {text}", code=code)


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        msg = response.get("Error", {}).get("Message")
        if msg:
            return str(msg)
    return str(exc)
