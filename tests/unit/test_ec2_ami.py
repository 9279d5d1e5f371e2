"""The image resolver: named images -> public SSM parameters per architecture, the default
per instance type, and the login user that follows the image."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from remote_config import ec2_ami
from remote_config.model import EC2Machine


@pytest.mark.parametrize(
    ("ami", "itype", "expected"),
    [
        (
            None,
            "t3.2xlarge",
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        ),
        (None, "m7g.large", "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"),
        (
            None,
            "g4dn.xlarge",
            "/aws/service/deeplearning/ami/x86_64/"
            "base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
        ),
        (
            "ubuntu",
            "t3.large",
            "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
        ),
        (
            "ubuntu",
            "t4g.small",
            "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id",
        ),
        (
            "ubuntu-22.04",
            "c5.large",
            "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
        ),
        (
            "dlami-ubuntu",
            "g5.xlarge",
            "/aws/service/deeplearning/ami/x86_64/"
            "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        ),
        (
            "al2023",
            "g4dn.xlarge",
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        ),
        ("ssm:/my/own/param", "t3.large", "/my/own/param"),
        ("ami-0123456789abcdef0", "t3.large", None),
    ],
)
def test_parameter_per_image_and_architecture(
    ami: str | None, itype: str, expected: str | None
) -> None:
    assert ec2_ami.parameter(ami, itype) == expected


def test_login_user_follows_the_image() -> None:
    assert ec2_ami.login_user(None, "t3.large") == "ec2-user"
    assert ec2_ami.login_user(None, "g4dn.xlarge") == "ec2-user"  # the AL2023 DLAMI
    assert ec2_ami.login_user("ubuntu", "t3.large") == "ubuntu"
    assert ec2_ami.login_user("dlami-ubuntu", "g5.xlarge") == "ubuntu"
    assert ec2_ami.login_user("ami-0123456789abcdef0", "t3.large") == "ec2-user"


def test_the_machine_setting_takes_names_and_defaults_the_user() -> None:
    assert EC2Machine(kind="ec2", ami="ubuntu").user == "ubuntu"
    assert EC2Machine(kind="ec2", ami="ubuntu", user="me").user == "me"
    assert EC2Machine(kind="ec2").user == "ec2-user"
    assert EC2Machine(kind="ec2", ami="dlami-ubuntu", instance_type="g5.xlarge").user == "ubuntu"
    with pytest.raises(ValidationError, match="'al2023', 'ubuntu'"):
        EC2Machine(kind="ec2", ami="debian")
