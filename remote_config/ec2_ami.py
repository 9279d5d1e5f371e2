"""Which image an EC2 machine boots, the pure part: the `ami` setting's named images, the
public SSM parameter each one is looked up from (per architecture), the default per instance
type (a Deep Learning AMI with the NVIDIA driver for GPU types, Amazon Linux 2023 for the
rest), and the login user each image creates. No I/O: `sidecar/machines/ec2/launch.py`
reads the parameter.

Parameter paths are AWS's and Canonical's published ones (Amazon Linux: "Query for the latest
Amazon Linux AMI IDs using Systems Manager Parameter Store"; Canonical: "Find Ubuntu images
on AWS"; Deep Learning AMIs: the DLAMI release notes, "Base OSS Nvidia Driver GPU AMI").
"""

from __future__ import annotations

from remote_config.ec2 import architecture, has_gpu

IMAGES: dict[str, str] = {
    "al2023": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}",
    "ubuntu": "/aws/service/canonical/ubuntu/server/24.04/stable/current/{deb}/hvm/ebs-gp3/ami-id",
    "ubuntu-22.04": (
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/{deb}/hvm/ebs-gp2/ami-id"
    ),
    "dlami": (
        "/aws/service/deeplearning/ami/{arch}/"
        "base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
    ),
    "dlami-ubuntu": (
        "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
    ),
}
USERS = {
    "al2023": "ec2-user",
    "ubuntu": "ubuntu",
    "ubuntu-22.04": "ubuntu",
    "dlami": "ec2-user",
    "dlami-ubuntu": "ubuntu",
}


def default_image(instance_type: str) -> str:
    """'dlami' (NVIDIA driver, CUDA, Docker with the NVIDIA runtime) for GPU types, else
    'al2023'."""
    return "dlami" if has_gpu(instance_type) else "al2023"


def image_name(ami: str | None, instance_type: str) -> str | None:
    """The named image `ami` means ('al2023', 'ubuntu', …); None for an AMI id or an
    explicit 'ssm:' parameter."""
    if ami is None:
        return default_image(instance_type)
    return ami if ami in IMAGES else None


def parameter(ami: str | None, instance_type: str) -> str | None:
    """The public SSM parameter holding the image's latest AMI id for the type's
    architecture; None when `ami` is an AMI id."""
    if ami is not None and ami.startswith("ssm:"):
        return ami.removeprefix("ssm:")
    name = image_name(ami, instance_type)
    if name is None:
        return None
    arch = architecture(instance_type)
    return IMAGES[name].format(arch=arch, deb="arm64" if arch == "arm64" else "amd64")


def login_user(ami: str | None, instance_type: str) -> str:
    """The user the image creates for the key pair (cloud-init's default user); ec2-user
    for AMI ids and parameters orch does not know."""
    name = image_name(ami, instance_type)
    return USERS.get(name or "", "ec2-user")
