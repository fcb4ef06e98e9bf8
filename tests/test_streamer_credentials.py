"""The vLLM pod's weights are read by the Run:ai streamer's native S3 client: it must find the Pod Identity
credentials the serving role's association gives the pod (components/upstream/vllm-runtime.json,
runaiStreamerCredentials)."""

import json
from typing import Any

from components import upstream
from components.versions import VLLM_VERSION
from infra.offline import Graph

ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"


def _credentials_facts() -> dict[str, Any]:
    facts: dict[str, Any] = upstream.facts("vllm-runtime")["runaiStreamerCredentials"]
    return facts


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_facts_are_for_the_pinned_vllm() -> None:
    # A vLLM bump changes which streamer versions the image can hold: re-check before trusting the rest.
    assert _credentials_facts()["vllmVersion"] == VLLM_VERSION


def test_every_streamer_version_the_image_can_hold_has_a_pod_identity_sdk() -> None:
    facts = _credentials_facts()
    checked = sorted(facts["checkedVersions"], key=_version)
    # The checked versions span vLLM's minimum to the newest released before the image.
    assert (checked[0], checked[-1]) == (facts["vllmMinimum"], facts["newestAtImageRelease"])
    assert f">={facts['vllmMinimum']}" in facts["vllmRequires"]
    minimum_sdk = _version(facts["podIdentityMinimumSdkCpp"])
    for version, record in facts["checkedVersions"].items():
        assert _version(record["awsSdkCpp"]) >= minimum_sdk, version


def test_streamer_reads_the_env_pod_identity_injects() -> None:
    facts = _credentials_facts()
    assert set(facts["podIdentityEnv"]) <= set(facts["streamerReads"])


def test_vllm_pod_gets_the_reader_role_through_pod_identity_alone(graph: Graph) -> None:
    deployment = graph.one("kubernetes:apps/v1:Deployment", "vllm-deployment")
    pod = deployment.inputs["spec"]["template"]["spec"]
    association = graph.one(ASSOCIATION, "vllm-model-reader")
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        deployment.inputs["metadata"]["namespace"], pod["serviceAccountName"]
    ), association.urn
    role = graph.one("aws:iam/role:Role", "model-store-reader")
    assert association.inputs["roleArn"] == graph.outputs["modelReaderRoleArn"], association.urn
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}, role.urn
    # IRSA on the same account would come first in the SDK's chain and take the role's place.
    account = graph.one("kubernetes:core/v1:ServiceAccount", "vllm-sa")
    annotations = account.inputs["metadata"].get("annotations") or {}
    assert "eks.amazonaws.com/role-arn" not in annotations, account.urn


def test_no_container_sets_credentials_that_shadow_pod_identity(graph: Graph) -> None:
    facts = _credentials_facts()
    shadowing = set(facts["shadowingEnv"]) | set(facts["podIdentityEnv"])
    deployment = graph.one("kubernetes:apps/v1:Deployment", "vllm-deployment")
    pod = deployment.inputs["spec"]["template"]["spec"]
    for container in pod["containers"] + pod.get("initContainers", []):
        names = {variable["name"] for variable in container.get("env", [])}
        assert not names & shadowing, f"{deployment.urn} {container['name']}: {sorted(names & shadowing)}"
        assert not container.get("envFrom"), f"{deployment.urn} {container['name']}: envFrom may carry keys"
