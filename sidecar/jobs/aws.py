"""boto3 for orch's AWS backends: lazy import, bounded retry on throttling, one error each.

`AwsSession` makes clients for one region (boto3 is imported on first use, with an install
hint when it is missing; `AWS_ENDPOINT_URL` is honoured by boto3 itself, which is how the
tests point it at moto's server). `call` runs one API call in a worker thread: throttling is
retried a bounded number of times with jittered backoff, and nothing else is retried by orch
or botocore; every failure becomes one `OrchError` that says what failed and what to do.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from sidecar.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    OrchError,
    Unreachable,
    UsageError,
)

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
MAX_ATTEMPTS = 5
BASE_DELAY_S = 0.25

_NOT_FOUND = {
    "ClusterNotFoundException": "the ECS cluster does not exist",
    "NoSuchBucket": "the S3 bucket does not exist",
    "NoSuchKey": "the object does not exist in S3",
    "ResourceNotFoundException": "the resource does not exist",
    "NoSuchEntity": "the IAM role or policy does not exist",
    "AWS.SimpleQueueService.NonExistentQueue": "the SQS queue does not exist",
    "QueueDoesNotExist": "the SQS queue does not exist",
    "ServiceNotFoundException": "the ECS service does not exist",
    "404": "it does not exist",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"}
_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
}
_BAD_REQUEST = {
    "InvalidParameterException",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "ValidationException",
    "ValidationError",
    "ClientException",
    "PlatformUnknownException",
    "PlatformTaskDefinitionIncompatibilityException",
    "InvalidRequest",
    "MalformedPolicyDocument",
}
_CONFLICT = {"BucketAlreadyExists", "ResourceInUseException", "OperationAbortedException"}


def boto3_module() -> Any:
    try:
        import boto3
    except ImportError:
        raise OrchError(
            "the AWS backends need boto3, which is not installed",
            hint="install the extra: pip install 'orch[aws]'",
        ) from None
    return boto3


class AwsSession:
    """Clients of one region, made once each (thread-safe for calls, per boto3's docs)."""

    def __init__(self, region: str, backend: str) -> None:
        self.region = region
        self.backend = backend
        self._clients: dict[str, Any] = {}
        self._session: Any = None
        self._account: str | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            boto3 = boto3_module()
            from botocore.config import Config

            if self._session is None:
                self._session = boto3.session.Session(region_name=self.region)
            # orch retries throttling itself (`call`); botocore retries nothing.
            config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
            if service == "s3":  # presigned URLs signed with SigV4 (SigV2 is legacy)
                config = config.merge(Config(signature_version="s3v4"))
            self._clients[service] = self._session.client(service, config=config)
        return self._clients[service]

    async def call(self, service: str, operation: str, /, **kwargs: Any) -> Any:
        client = self.client(service)
        fn: Callable[..., Any] = getattr(client, operation)
        return await call_with_retry(fn, service, operation, self.backend, **kwargs)

    async def account(self) -> str:
        if self._account is None:
            ident = await self.call("sts", "get_caller_identity")
            self._account = str(ident["Account"])
        return self._account


async def call_with_retry(
    fn: Callable[..., Any], service: str, operation: str, backend: str, /, **kwargs: Any
) -> Any:
    """`fn(**kwargs)` in a thread; throttling retried (bounded, jittered), the rest mapped."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except Exception as exc:
            if error_code(exc) in THROTTLING and attempt < MAX_ATTEMPTS:
                delay = BASE_DELAY_S * 2 ** (attempt - 1)
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                continue
            raise aws_error(exc, service, operation, backend) from None
    raise AssertionError("not reached")  # pragma: no cover


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def aws_error(exc: BaseException, service: str, operation: str, backend: str) -> OrchError:
    """One clear orch error for any boto3/botocore failure of `service.operation`."""
    if isinstance(exc, OrchError):
        return exc
    name = type(exc).__name__
    what = f"AWS {service} {operation}"
    init_hint = f"create what the backend needs with: orch backend init {backend}"
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError"):
        return AuthenticationFailed(
            f"{what}: no usable AWS credentials or region ({exc})",
            hint="configure them (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY) and set the backend's region in orch.toml",
        )
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "ReadTimeoutError",
    ):
        return Unreachable(
            f"{what}: could not reach AWS ({exc})",
            hint="check the network (and AWS_ENDPOINT_URL if it is set), then retry",
        )
    code = error_code(exc)
    if code is None:
        return OrchError(f"{what} failed: {name}: {exc}")
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message") or "").strip()
    detail = f"{code}: {message}" if message else code
    if code in THROTTLING:
        return OrchError(
            f"{what} is throttled by AWS ({detail}) after {MAX_ATTEMPTS} attempts",
            hint="wait a minute and retry; many parallel orch commands share one rate limit",
        )
    if code in _NOT_FOUND:
        return NotFound(f"{what}: {_NOT_FOUND[code]} ({detail})", hint=init_hint)
    if code in _DENIED:
        return AuthenticationFailed(
            f"{what} was denied ({detail})",
            hint=f"the AWS identity in use needs permission for {service}:{_action(operation)}; "
            "see docs/fargate.md for the policy orch needs",
        )
    if code in _CREDENTIALS:
        return AuthenticationFailed(
            f"{what}: the AWS credentials were refused ({detail})",
            hint="refresh them (aws sso login, or new keys), then retry",
        )
    if code in _BAD_REQUEST:
        return UsageError(
            f"{what} refused the request ({detail})",
            hint=f"check [backends.{backend}] in orch.toml (subnets, security groups, image, "
            "sizes)",
        )
    if code in _CONFLICT:
        return Conflict(f"{what}: {detail}", hint="choose another name, or wait and retry")
    return OrchError(f"{what} failed ({detail})")


def _action(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))
