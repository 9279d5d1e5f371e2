"""The `ec2` machine kind: find the project's instance by its tags, create or start it, wait
until it runs and its sshd answers with the host key orch pinned, stop it, terminate it.

Laptop-side state (`$ORCH_HOME/machines/NAME/ec2.json`) caches the instance id and the
address it was last reached at, so `orch ssh`, jobs and sync never call AWS (or import
boto3); `orch up` refreshes it, `orch down` clears the address. The host key is generated
here, installed by cloud-init from user-data and pinned before the instance exists; a
laptop that did not create the instance re-pins it from the user-data the EC2 API returns.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from typing import Any

from remote_config import ec2 as render
from remote_config import interruption
from remote_config.ec2_prices import cost_so_far, describe_price, on_demand_price
from remote_config.model import EC2Machine
from sidecar.errors import (
    Conflict,
    HostKeyMismatch,
    MachineNotRunning,
    MissingDependency,
    OrchError,
)
from sidecar.layout import Layout
from sidecar.machines.base import (
    Capabilities,
    CreatePlan,
    MachineInfo,
    MachineState,
    Progress,
    Provider,
    SSHTarget,
)
from sidecar.machines.ec2 import cloudwatch, iam, stopping, waiting
from sidecar.machines.ec2.aws import Aws
from sidecar.machines.ec2.launch import create_instance
from sidecar.machines.ec2.pricing import instance_price
from sidecar.ssh import keys
from sidecar.state import async_file_lock, read_json, write_json

WAIT_RUNNING_S = 300.0
WAIT_SSH_S = 300.0
# The language server reads status every 1-5 s: describe the instance at most this often
# (up, down and terminate forget the cached answer; uptime and cost are computed anew).
STATUS_TTL_S = 10.0

_STATES: dict[str, MachineState] = {
    "pending": "starting",
    "running": "running",
    "stopping": "stopping",
    "stopped": "stopped",
    "shutting-down": "stopping",
}


class EC2Provider(Provider):
    kind = "ec2"
    capabilities = Capabilities(
        creates=True,
        can_stop=True,
        can_terminate=True,
        has_cost=True,
        has_idle_stop=True,
        reach=["direct", "proxy_command"],
    )

    def __init__(
        self, name: str, spec: EC2Machine, layout: Layout, project: str, aws: Aws | None = None
    ) -> None:
        super().__init__(name, spec, layout, project)
        self.spec: EC2Machine = spec
        self.aws = aws or Aws(spec.region, spec.aws_profile)
        self._owner: str | None = None
        self._seen: tuple[float, dict[str, Any] | None] | None = None
        # Waiting bounds and the handshake used to check the host key (tests shorten them).
        self.wait_running_s = WAIT_RUNNING_S
        self.wait_ssh_s = WAIT_SSH_S
        self.poll_s = 3.0

    # -- laptop-side cache ------------------------------------------------------------------
    @property
    def _cache_file(self) -> Any:
        return self.state_dir / "ec2.json"

    def _cache(self) -> dict[str, Any]:
        data = read_json(self._cache_file)
        return data if isinstance(data, dict) else {}

    def _save(self, **fields: Any) -> None:
        self.layout.ensure()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(self._cache_file, {**self._cache(), **fields})

    # -- AWS lookups ------------------------------------------------------------------------
    async def owner(self) -> str:
        """Who the instance belongs to: the caller's ARN (the same on every laptop)."""
        if self._owner is None:
            ident = await self.aws.call("sts", "get_caller_identity")
            self._owner = str(ident["Arn"])
        return self._owner

    async def find(self) -> dict[str, Any] | None:
        """The project's instance for this machine (not terminated), or None."""
        filters = render.instance_filters(self.project, self.name, await self.owner())
        found = await self.aws.call("ec2", "describe_instances", Filters=filters)
        instances = [i for r in found["Reservations"] for i in r["Instances"]]
        if len(instances) > 1:
            ids = ", ".join(i["InstanceId"] for i in instances)
            raise Conflict(
                f"machine {self.name!r} matches several instances: {ids}",
                hint="terminate the extra ones in the EC2 console (orch machines lists them)",
            )
        return instances[0] if instances else None

    async def _describe(self, instance_id: str) -> dict[str, Any]:
        found = await self.aws.call("ec2", "describe_instances", InstanceIds=[instance_id])
        return dict(found["Reservations"][0]["Instances"][0])

    # -- up ---------------------------------------------------------------------------------
    async def up(self, progress: Progress | None = None) -> MachineInfo:
        self.layout.ensure()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Two `orch up` at once from this laptop must not launch two instances.
        async with async_file_lock(self.state_dir / "up.lock"):
            return await self._up(progress or (lambda _m: None))

    async def _up(self, say: Progress) -> MachineInfo:
        self._seen = None
        keys.ensure_client_key(self.layout)
        say(f"looking for {self.name} in {self.spec.region}")
        inst = await self.find()
        note = None
        if inst is None:
            say(f"launching a {self.spec.instance_type} in {self.spec.region}")
            inst = await create_instance(self, say)
            note = "created"
        iid = inst["InstanceId"]
        self._save(instance_id=iid, region=self.spec.region)
        if self.spec.cloudwatch_logs:
            await cloudwatch.ensure_log_group(self, say)
        if note is None:  # an existing instance: SSM or logs may have been turned on since
            await iam.ensure_attached(self, inst, say)
        state = inst["State"]["Name"]
        if state == "running" and note is None:
            note = "already running"
        if state == "stopping":
            await self._wait(iid, "stopped", say)
            state = "stopped"
        if state == "stopped":
            say(f"starting {iid}")
            await self.aws.call("ec2", "start_instances", InstanceIds=[iid])
            note = "started"
        await self._wait(iid, "running", say)
        await stopping.ensure_shutdown_behavior(self.aws, iid, self.spec.stop_action, say)
        inst = await self._describe(iid)
        await self._pin(iid)
        say("host key pinned from the instance's user-data (EC2 API)")
        target = self._target_for(inst)
        self._save(host=target.host, proxy_command=target.proxy_command)
        say("waiting for SSH (host key checked on the handshake)")
        await waiting.wait_for_ssh(
            target, _handshake, timeout=self.wait_ssh_s, poll=self.poll_s, progress=say
        )
        say("SSH reachable, host key verified")
        return await self._info(inst, note)

    async def _wait(self, iid: str, want: str, say: Progress) -> None:
        async def describe() -> tuple[str, str | None]:
            inst = await self._describe(iid)
            return inst["State"]["Name"], (inst.get("StateReason") or {}).get("Message")

        await waiting.wait_for_state(
            describe,
            want,
            instance_id=iid,
            timeout=self.wait_running_s,
            poll=self.poll_s,
            progress=say,
        )

    async def _pin(self, iid: str) -> None:
        """Pin the host key orch put in the instance's user-data, read back through the EC2
        API (authenticated, not the network path to the machine)."""
        attr = await self.aws.call(
            "ec2", "describe_instance_attribute", InstanceId=iid, Attribute="userData"
        )
        encoded = (attr.get("UserData") or {}).get("Value")
        key = render.host_key_from_user_data(render.decode_user_data(encoded)) if encoded else None
        if key is None:
            raise HostKeyMismatch(
                f"instance {iid} carries no host key from orch, so its identity cannot be verified",
                hint="orch only connects to instances it launched itself; terminate this one "
                "(orch down --terminate) and run orch up",
            )
        keys.pin_host_key(self.layout, self.alias, key)

    # -- reach ------------------------------------------------------------------------------
    def _proxy_command(self) -> str | None:
        if self.spec.proxy_command:
            return self.spec.proxy_command
        if self.spec.reach == "ssm":
            return render.ssm_proxy_command(self.spec.region)
        return None

    def _target_for(self, inst: dict[str, Any]) -> SSHTarget:
        if self.spec.reach == "ssm":
            host = inst["InstanceId"]
        elif self.spec.proxy_command:
            host = inst.get("PrivateIpAddress") or inst["InstanceId"]
        else:
            host = inst.get("PublicIpAddress") or ""
            if not host:
                raise OrchError(
                    f"instance {inst['InstanceId']} has no public address",
                    hint="use a subnet that assigns public IPs, or reach = 'ssm'",
                )
        return self._target(host, self._proxy_command())

    def _target(self, host: str, proxy_command: str | None) -> SSHTarget:
        if proxy_command and proxy_command.startswith("aws ssm "):
            _check_ssm_tools()
        return SSHTarget(
            alias=self.alias,
            host=host,
            port=22,
            user=self.spec.user,
            identity_file=str(self.layout.client_key),
            host_key_alias=self.alias,
            known_hosts_file=str(self.layout.known_hosts),
            proxy_command=proxy_command,
        )

    async def ssh_target(self) -> SSHTarget:
        cache = self._cache()
        if not cache.get("host"):
            raise MachineNotRunning(
                f"machine {self.name!r} is not running (or was not started from here)",
                hint=f"start it: orch up {self.name}",
            )
        return self._target(str(cache["host"]), self._proxy_command())

    def job_setup(self, job: str) -> str:
        return cloudwatch.job_setup(self, job)

    async def archived_job_logs(self, job: str, tail: int | None = None) -> str | None:
        if not self.spec.cloudwatch_logs:
            return None
        return await cloudwatch.archived_logs(self, job, tail)

    def interruption_check(self) -> str | None:
        """The spot notice check (IMDSv2, `metadata_url`) for a spot machine; None on demand."""
        seen = self._seen[1] if self._seen is not None else None
        spot = self.spec.spot or bool(seen and seen.get("InstanceLifecycle") == "spot")
        return interruption.check_command(self.spec.metadata_url) if spot else None

    async def create_plan(self) -> CreatePlan | None:
        if await self.find() is not None:
            return None  # starting an existing instance was agreed to when it was created
        spec = self.spec
        fake = {
            "InstanceType": spec.instance_type,
            "InstanceLifecycle": "spot" if spec.spot else None,
            "Placement": {"AvailabilityZone": spec.availability_zone or ""},
        }
        price, note = await instance_price(self.aws, fake, spec.region)
        what = f"{spec.instance_type} in {spec.region}, {describe_price(price, spec.spot)}"
        gpu = render.has_gpu(spec.instance_type)
        reason = None
        if gpu:
            reason = f"{spec.instance_type} has a GPU"
        elif price is None:
            reason = "its price is unknown to orch"
        elif price > spec.confirm_above_per_hour:
            reason = f"it costs more than ${spec.confirm_above_per_hour:.2f}/h"
        return CreatePlan(
            description=f"create {what} ({note}), disk {spec.volume_gb} GB {spec.volume_type}",
            price_per_hour=price,
            ask=reason is not None,
            reason=reason,
        )

    # -- down / terminate -------------------------------------------------------------------
    async def down(self) -> MachineInfo:
        self._seen = None
        inst = await self.find()
        self._save(host=None)
        if inst is None:
            return self._absent("nothing to stop")
        iid = inst["InstanceId"]
        if inst["State"]["Name"] in ("pending", "running"):
            await self.aws.call("ec2", "stop_instances", InstanceIds=[iid])
            inst = await self._describe(iid)
            return await self._info(inst, "stopping; the disk is kept (orch up starts it)")
        return await self._info(inst, "already stopped")

    async def terminate_plan(self) -> str | None:
        inst = await self.find()
        if inst is None:
            return None
        volumes = [m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m]
        disks = ", ".join(volumes) or "no EBS volumes"
        return f"instance {inst['InstanceId']} ({inst['InstanceType']}) and its volumes: {disks}"

    async def terminate(self) -> MachineInfo:
        self._seen = None
        inst = await self.find()
        self._save(host=None, instance_id=None)
        if inst is None:
            return self._absent("nothing to terminate")
        iid = inst["InstanceId"]
        await self.aws.call("ec2", "terminate_instances", InstanceIds=[iid])
        keys.unpin_host_key(self.layout, self.alias)
        inst = await self._describe(iid)
        return await self._info(inst, f"terminated {iid}; its disk is deleted")

    # -- status -----------------------------------------------------------------------------
    async def status(self) -> MachineInfo:
        now = time.monotonic()
        if self._seen is not None and now - self._seen[0] < STATUS_TTL_S:
            inst = self._seen[1]
        else:
            inst = await self.find()
            self._seen = (now, inst)
        if inst is None:
            return self._absent("no instance; orch up creates one")
        return await self._info(inst)

    def _absent(self, detail: str) -> MachineInfo:
        return MachineInfo(
            name=self.name,
            kind=self.kind,
            state="not-created",
            instance_type=self.spec.instance_type,
            market="spot" if self.spec.spot else "on-demand",
            price_per_hour=on_demand_price(self.spec.region, self.spec.instance_type),
            detail=detail,
        )

    async def _info(self, inst: dict[str, Any], note: str | None = None) -> MachineInfo:
        raw = inst["State"]["Name"]
        spot = inst.get("InstanceLifecycle") == "spot"
        price, price_note = await instance_price(self.aws, inst, self.spec.region)
        uptime = None
        if raw == "running" and inst.get("LaunchTime"):
            uptime = max(
                0.0, (dt.datetime.now(dt.UTC) - _aware(inst["LaunchTime"])).total_seconds()
            )
        address = inst.get("PublicIpAddress") or inst.get("PrivateIpAddress")
        return MachineInfo(
            name=self.name,
            kind=self.kind,
            state=_STATES.get(raw, "unknown") if raw != "terminated" else "not-created",
            address=f"{inst['InstanceId']} {address}" if address else inst["InstanceId"],
            uptime_s=None if uptime is None else round(uptime, 1),
            instance_type=inst.get("InstanceType"),
            market="spot" if spot else "on-demand",
            price_per_hour=price,
            cost_so_far=cost_so_far(price, uptime),
            price_note=price_note,
            detail=note or _stop_reason(inst),
        )


def _stop_reason(inst: dict[str, Any]) -> str | None:
    """Why a stopped instance stopped, when AWS did it (a spot interruption above all)."""
    if inst["State"]["Name"] not in ("stopped", "stopping"):
        return None
    reason = inst.get("StateReason") or {}
    code, message = str(reason.get("Code", "")), str(reason.get("Message", ""))
    if code.startswith("Server.Spot") or "spot" in message.lower():
        return f"stopped by a spot interruption ({code}): orch up starts it when capacity returns"
    return None


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def _handshake(target: SSHTarget) -> None:
    from sidecar.ssh.pool import open_connection

    conn = await open_connection(target, timeout=10)
    conn.close()
    await asyncio.wait_for(conn.wait_closed(), timeout=5)


def _check_ssm_tools() -> None:
    missing = [t for t in ("aws", "session-manager-plugin") if shutil.which(t) is None]
    if missing:
        raise MissingDependency(
            f"reach = 'ssm' needs {' and '.join(missing)} on PATH",
            hint="install the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/"
            "getting-started-install.html) and the Session Manager plugin (https://docs.aws."
            "amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-"
            "plugin.html)",
        )
