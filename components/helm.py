"""Helm releases of the charts pinned in components/versions.py."""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.versions import HelmChart


def pinned_release(
    name: str,
    chart: HelmChart,
    namespace: str,
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
    timeout_s: int,
    skip_crds: bool = False,
    value_yaml_files: list[pulumi.Asset] | None = None,
) -> k8s.helm.v3.Release:
    """A release of `chart` at its pinned version, rolled back if it does not become ready within `timeout_s`
    (Helm's own default, 300 s, is too short for a first install that pulls images onto nodes that just joined).
    A `helm.v3.Release` (not `helm.v4.Chart`) so that the offline graph and policies see the chart, version and
    values as inputs."""
    return k8s.helm.v3.Release(
        name,
        name=chart.name,
        chart=chart.chart,
        version=chart.version,
        # An OCI chart carries its registry in `chart`; repository options would make the provider look for an
        # index.yaml there and fail at `pulumi up` (pulumi/pulumi-kubernetes#2158).
        repository_opts={"repo": chart.repository} if chart.repository else None,
        namespace=namespace,
        atomic=True,
        timeout=timeout_s,
        values=values,
        value_yaml_files=value_yaml_files,
        skip_crds=skip_crds,
        create_namespace=True,
        opts=opts,
    )
