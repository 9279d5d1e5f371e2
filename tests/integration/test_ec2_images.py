"""Image defaults against moto: a GPU type boots the Deep Learning AMI and an Ubuntu image
logs in as `ubuntu`, each looked up from its public SSM parameter; a parameter the region
lacks is a clear orch.toml error.

moto ships only the Amazon Linux parameters (and, like AWS, refuses to let anyone write under
`/aws/`), so the test publishes the DLAMI and Ubuntu ones in the in-process moto backend,
pointing at an image moto knows.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from remote_config import ec2_ami
from sidecar.errors import CloudConfigError
from tests.integration.test_ec2_moto import _boto, _orch, _toml, no_handshake  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
REGION = "ap-northeast-1"


def _publish(name: str) -> str:
    """Publish the public parameter `name` in moto, naming an AMI moto has; its id."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ssm.models import Parameter, ssm_backends

    image = _boto("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]  # type: ignore[attr-defined]
    parameters = ssm_backends[DEFAULT_ACCOUNT_ID][REGION]._parameters
    parameters[name].append(
        Parameter(
            account_id=DEFAULT_ACCOUNT_ID,
            name=name,
            value=image,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=time.time(),
            version=1,
            data_type="aws:ec2:image",
        )
    )
    return str(image)


def _instance() -> dict[str, object]:
    [inst] = [i for r in _boto("ec2").describe_instances()["Reservations"] for i in r["Instances"]]  # type: ignore[attr-defined]
    return dict(inst)


@pytest.mark.usefixtures("no_handshake")
async def test_gpu_type_boots_the_deep_learning_ami_or_says_what_is_missing(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    gpu = _toml().replace("t3.2xlarge", "g4dn.xlarge")
    param = ec2_ami.parameter(None, "g4dn.xlarge")
    assert param and "deeplearning" in param
    with pytest.raises(CloudConfigError, match="does not exist in ap-northeast-1") as missing:
        await (await _orch(project, gpu)).up()
    assert param in missing.value.message and "ami-" in (missing.value.hint or "")
    image = _publish(param)
    info = await (await _orch(project, gpu)).up()
    assert info.state == "running"
    assert _instance()["ImageId"] == image


@pytest.mark.usefixtures("no_handshake")
async def test_ubuntu_image_logs_in_as_ubuntu(aws_env: str, project: Path, orch_home: Path) -> None:
    image = _publish(str(ec2_ami.parameter("ubuntu", "t3.2xlarge")))
    orch = await _orch(project, _toml('ami = "ubuntu"\n'))
    await orch.up()
    inst = _instance()
    assert inst["ImageId"] == image
    assert (await orch.ssh_target()).user == "ubuntu"
    attr = _boto("ec2").describe_instance_attribute(  # type: ignore[attr-defined]
        InstanceId=inst["InstanceId"], Attribute="userData"
    )
    user_data = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert "ssh_authorized_keys:" in user_data and "users:" not in user_data  # the image's user
