"""The SSM side of the seam: a command through SendCommand and GetCommandInvocation, waiting without sleeping."""

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.images.remote import Poller, SsmRemote
from infra.models.errors import Failed

from .conftest import REGION, Aws

NO_WAIT = Poller(interval_s=0, sleep=lambda seconds: None)


def test_a_command_runs_as_aws_run_shell_script(aws: Aws) -> None:
    (instance,) = aws.ec2.run_instances(ImageId=aws.ami, MinCount=1, MaxCount=1, InstanceType="m7i.large")["Instances"]
    ssm = boto3.client("ssm", region_name=REGION)
    assert SsmRemote(ssm, NO_WAIT).run(instance["InstanceId"], "say hello", ["echo hello"], 60) == ""  # moto: no output
    (command,) = ssm.list_commands()["Commands"]
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Parameters"] == {"commands": ["echo hello"], "executionTimeout": ["60"]}


class FlakySsm:
    """GetCommandInvocation as SSM answers it: first not registered yet, then in progress, then `final`."""

    def __init__(self, final: dict[str, Any]) -> None:
        self.answers: list[Any] = ["missing", {"Status": "InProgress"}, final]

    def send_command(self, **_: Any) -> dict[str, Any]:
        return {"Command": {"CommandId": "c-1"}}

    def get_command_invocation(self, **_: Any) -> dict[str, Any]:
        answer = self.answers.pop(0)
        if answer == "missing":
            raise ClientError({"Error": {"Code": "InvocationDoesNotExist", "Message": ""}}, "GetCommandInvocation")
        return dict(answer)


def test_waits_for_the_invocation_and_returns_its_output() -> None:
    ssm = FlakySsm({"Status": "Success", "StandardOutputContent": "docker.io/vllm/vllm-openai:v0.33.0\n"})
    assert SsmRemote(ssm, NO_WAIT).run("i-1", "check images", ["ctr"], 60) == "docker.io/vllm/vllm-openai:v0.33.0\n"


def test_a_failed_command_names_the_step_and_its_error() -> None:
    ssm = FlakySsm({"Status": "Failed", "StandardErrorContent": "ctr: failed to resolve reference\n"})
    with pytest.raises(Failed, match=r"pull docker\.io/x on i-1: Failed: ctr: failed to resolve reference"):
        SsmRemote(ssm, NO_WAIT).run("i-1", "pull docker.io/x", ["ctr"], 60)
