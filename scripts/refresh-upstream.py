"""Regenerate the recorded upstream facts in components/upstream/ for the pins in components/versions.py.

    python scripts/refresh-upstream.py                      # everything, over the network
    python scripts/refresh-upstream.py --only charts,ami    # some of: charts, karpenter, lbc, ami, vllm, images, aws
    python scripts/refresh-upstream.py --mirror aws/eks-charts=/path/to/git/dir ...   # read a repo from a local git

Sources (all public, no credentials): chart repositories' index.yaml and charts' Chart.yaml/values.yaml on GitHub
at the release tag; aws/karpenter-provider-aws's reference CloudFormation (controller IAM policy); the load balancer
controller's docs/install/iam_policy.json at the chart's appVersion; awslabs/amazon-eks-ami release tags and
CHANGELOG; Docker Hub for image tags; EKS and ElastiCache versions from two read-only AWS describe calls (your
credentials); and vLLM's own argument parser, from `vllm==<pinned>` installed into a
throwaway virtualenv (`--vllm-venv`, CPU is enough; the wheel pulls torch, several GB). Not run by the tests:
the tests read what this writes. Review the diff, then run `./tasks.sh test`.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components import versions  # noqa: E402
from components.upstream import FACTS_DIR, version_key  # noqa: E402

GITHUB_RAW = "https://raw.githubusercontent.com"
# Where each index chart lives on GitHub (for Chart.yaml/values.yaml at the release) and how its tags are named.
# aws/eks-charts has no per-chart tags: its gh-pages index.yaml is the record there.
CHART_SOURCES: dict[str, tuple[str, str | None, str]] = {
    "aws-load-balancer-controller": ("aws/eks-charts", None, "stable/aws-load-balancer-controller"),
    "keda": ("kedacore/charts", "v{version}", "keda"),
    "kube-prometheus-stack": (
        "prometheus-community/helm-charts", "kube-prometheus-stack-{version}", "charts/kube-prometheus-stack"
    ),
    "nvidia-device-plugin": ("NVIDIA/k8s-device-plugin", "v{version}", "deployments/helm/nvidia-device-plugin"),
    "dcgm-exporter": ("NVIDIA/dcgm-exporter", None, "deployment"),
    "aws-for-fluent-bit": ("aws/eks-charts", None, "stable/aws-for-fluent-bit"),
    "opentelemetry-collector": (
        "open-telemetry/opentelemetry-helm-charts",
        "opentelemetry-collector-{version}",
        "charts/opentelemetry-collector",
    ),
    "karpenter": ("aws/karpenter-provider-aws", None, "charts/karpenter"),
    "karpenter-crd": ("aws/karpenter-provider-aws", None, "charts/karpenter-crd"),
}
# Chart default values the program overrides key by key (Helm merges maps, so a default survives unless removed).
RECORDED_DEFAULTS = {"keda": ["resources"]}
KARPENTER_COMPATIBILITY_PATH = "website/content/en/v{minor}/upgrading/compatibility.md"
KARPENTER_POLICY_PATH = "website/content/en/v{minor}/getting-started/getting-started-with-karpenter/cloudformation.yaml"
LBC_POLICY_PATH = "docs/install/iam_policy.json"
EKS_AMI_REPO = "awslabs/amazon-eks-ami"
AMI_TAG = re.compile(r"^v(20\d{6})$")


class Sources:
    """Reads upstream files from GitHub, or from a local git mirror of the repository when one is given."""

    def __init__(self, mirrors: dict[str, Path]) -> None:
        self.mirrors = mirrors

    def text(self, repo: str, ref: str, path: str) -> str:
        if repo in self.mirrors:
            return git(self.mirrors[repo], "show", f"{ref}:{path}")
        return http(f"{GITHUB_RAW}/{repo}/{ref}/{path}")

    def tags(self, repo: str) -> list[str]:
        if repo in self.mirrors:
            return git(self.mirrors[repo], "tag").split()
        names: list[str] = []
        for page in range(1, 11):
            batch = json.loads(http(f"https://api.github.com/repos/{repo}/tags?per_page=100&page={page}"))
            names += [tag["name"] for tag in batch]
            if len(batch) < 100:
                break
        return names

    def commit(self, repo: str, ref: str) -> str:
        if repo in self.mirrors:
            return git(self.mirrors[repo], "rev-parse", f"{ref}^{{commit}}").strip()
        return str(json.loads(http(f"https://api.github.com/repos/{repo}/commits/{ref}"))["sha"])

    def chart_index(self, repo: str, url: str) -> dict[str, Any] | None:
        """A Helm repository's index.yaml; from a mirror, its gh-pages branch when the mirror holds it."""
        if repo not in self.mirrors:
            return dict(yaml.safe_load(http(f"{url}/index.yaml")))
        try:
            return dict(yaml.safe_load(self.text(repo, "gh-pages", pages_index_path(url))))
        except subprocess.CalledProcessError:
            return None


def pages_index_path(url: str) -> str:
    """Where a GitHub Pages chart repository keeps index.yaml on its gh-pages branch: the URL's path after the
    repository name (https://nvidia.github.io/dcgm-exporter/helm-charts -> helm-charts/index.yaml)."""
    below_repo = urllib.parse.urlsplit(url).path.strip("/").split("/", 1)[1:]
    return f"{below_repo[0]}/index.yaml" if below_repo else "index.yaml"


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True, text=True).stdout


def http(url: str) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": "llm-platform-refresh-upstream"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.read().decode())


def source(repo: str, ref: str, path: str, commit: str | None = None, **extra: str) -> dict[str, str]:
    fact = {"repo": repo, "ref": ref, "path": path, "url": f"https://github.com/{repo}/blob/{ref}/{path}"}
    if commit:
        fact["commit"] = commit
    return {**fact, **extra}


def all_charts() -> list[versions.HelmChart]:
    return [value for value in vars(versions).values() if isinstance(value, versions.HelmChart)]


def chart_facts(sources: Sources) -> dict[str, Any]:
    charts = {}
    for chart in all_charts():
        repo, ref_pattern, directory = CHART_SOURCES[chart.name]
        if chart.repository is None:
            fact = oci_chart(sources, chart, repo, directory)
        else:
            fact = index_chart(sources, chart, repo, ref_pattern, directory)
        defaults = RECORDED_DEFAULTS.get(chart.name)
        if defaults and ref_pattern:
            ref, path = ref_pattern.format(version=chart.version), f"{directory}/values.yaml"
            values = yaml.safe_load(sources.text(repo, ref, path))
            fact["defaults"] = {key: values[key] for key in defaults}
            fact["defaultsSource"] = source(repo, ref, path)
        charts[chart.name] = fact
    return charts


def oci_chart(sources: Sources, chart: versions.HelmChart, repo: str, directory: str) -> dict[str, Any]:
    """An OCI chart: its reference as the provider pulls it. The repo's Chart.yaml on the default branch carries
    the release's version (the release tag still holds the previous one until the post-release commit)."""
    commit = sources.commit(repo, "HEAD" if repo in sources.mirrors else "main")
    meta = yaml.safe_load(sources.text(repo, commit, f"{directory}/Chart.yaml"))
    if meta["version"] != chart.version:
        raise SystemExit(f"{chart.name}: {repo} {directory}/Chart.yaml is at {meta['version']}, pin is {chart.version}")
    fact = {
        "form": "oci", "chart": chart.chart, "name": meta["name"], "versions": [chart.version],
        "appVersion": str(meta["appVersion"]), "kubeVersion": meta.get("kubeVersion"),
        "source": source(repo, commit, f"{directory}/Chart.yaml"),
    }
    if repo not in sources.mirrors:
        fact["registry"] = oci_manifest(chart.chart, chart.version)
    return fact


def oci_manifest(reference: str, version: str) -> dict[str, str]:
    """The chart's manifest in the registry, fetched anonymously as Helm would (public.ecr.aws token endpoint)."""
    registry, _, repository = reference.removeprefix("oci://").partition("/")
    token = json.loads(http(f"https://{registry}/token/?scope=repository:{repository}:pull"))["token"]
    url = f"https://{registry}/v2/{repository}/manifests/{version}"
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # a 404 raises: the version is not published
        return {"url": url, "digest": str(response.headers.get("Docker-Content-Digest", ""))}


def index_chart(
    sources: Sources, chart: versions.HelmChart, repo: str, ref_pattern: str | None, directory: str
) -> dict[str, Any]:
    """An index chart: the repository URL, the chart name, the versions its index.yaml lists and the pinned
    release's appVersion. Without the index (a mirror lacking it), the Chart.yaml at the release tag."""
    assert chart.repository is not None
    index = sources.chart_index(repo, chart.repository)
    fact = {"form": "index", "repo": chart.repository, "chart": chart.name, "name": chart.name}
    if index is not None:
        listed = {str(entry["version"]): entry for entry in index["entries"][chart.name]}
        if chart.version not in listed:
            raise SystemExit(f"{chart.name} {chart.version} is not in {chart.repository}/index.yaml")
        where = source(repo, "gh-pages", pages_index_path(chart.repository), index=f"{chart.repository}/index.yaml")
        newest = sorted(listed, key=version_key)[-10:]
        return {**fact, "versions": sorted({*newest, chart.version}, key=version_key),
                "appVersion": str(listed[chart.version].get("appVersion", "")),
                "kubeVersion": listed[chart.version].get("kubeVersion"), "source": where}
    if ref_pattern is None:
        raise SystemExit(f"{chart.name}: no index.yaml and no release tag to read Chart.yaml from")
    ref = ref_pattern.format(version=chart.version)
    meta = yaml.safe_load(sources.text(repo, ref, f"{directory}/Chart.yaml"))
    if (meta["name"], str(meta["version"])) != (chart.name, chart.version):
        raise SystemExit(f"{repo} {ref}:{directory}/Chart.yaml is {meta['name']} {meta['version']}")
    return {**fact, "versions": [chart.version], "appVersion": str(meta.get("appVersion", "")),
            "kubeVersion": meta.get("kubeVersion"),
            "source": source(repo, ref, f"{directory}/Chart.yaml", commit=sources.commit(repo, ref))}


def cfn_document(text: str) -> dict[str, Any]:
    """The CloudFormation template with its short-form tags (!Sub, !Ref, !GetAtt) read as plain values."""
    class Loader(yaml.SafeLoader):
        pass

    def plain_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_mapping(node)  # type: ignore[arg-type]

    Loader.add_multi_constructor("!", plain_tag)
    return dict(yaml.load(text, Loader=Loader))  # a SafeLoader: only plain data


def karpenter_facts(sources: Sources) -> dict[str, Any]:
    """The controller's managed policies of the reference template, `${...}` placeholders as upstream wrote them."""
    repo = "aws/karpenter-provider-aws"
    minor = ".".join(versions.KARPENTER.version.split(".")[:2])
    path = KARPENTER_POLICY_PATH.format(minor=minor)
    ref = "HEAD" if repo in sources.mirrors else "main"
    commit = sources.commit(repo, ref)
    resources = cfn_document(sources.text(repo, commit, path))["Resources"]
    policies = {
        name: json.loads(resource["Properties"]["PolicyDocument"])["Statement"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
    }
    events = [
        resource["Properties"]["EventPattern"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Events::Rule"
    ]
    return {
        "version": versions.KARPENTER.version,
        "source": source(repo, commit, path),
        "placeholders": sorted(set(re.findall(r"\$\{([^}]+)\}", json.dumps(policies)))),
        "policies": policies,
        "interruptionEvents": events,
    }


def karpenter_compatibility(sources: Sources) -> dict[str, Any]:
    """The docs' compatibility matrix for the pinned minor: per Kubernetes version, the oldest Karpenter it needs."""
    repo = "aws/karpenter-provider-aws"
    minor = ".".join(versions.KARPENTER.version.split(".")[:2])
    path = KARPENTER_COMPATIBILITY_PATH.format(minor=minor)
    commit = sources.commit(repo, "HEAD" if repo in sources.mirrors else "main")
    rows = {}
    for line in sources.text(repo, commit, path).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in ("Kubernetes", "karpenter"):
            rows[cells[0]] = cells[1:]
    minimums = [cell.replace("\\", "").removeprefix(">=").strip() for cell in rows["karpenter"]]
    return {
        "version": versions.KARPENTER.version,
        "source": source(repo, commit, path),
        "minimumKarpenter": dict(zip(rows["Kubernetes"], minimums, strict=True)),
    }


def lbc_facts(sources: Sources, charts: dict[str, Any]) -> dict[str, Any]:
    repo = "kubernetes-sigs/aws-load-balancer-controller"
    app_version = charts[versions.AWS_LOAD_BALANCER_CONTROLLER.name]["appVersion"]
    commit = sources.commit(repo, app_version)
    return {
        "chartVersion": versions.AWS_LOAD_BALANCER_CONTROLLER.version,
        "appVersion": app_version,
        "source": source(repo, app_version, LBC_POLICY_PATH, commit),
        "policy": json.loads(sources.text(repo, app_version, LBC_POLICY_PATH)),
    }


def ami_facts(sources: Sources) -> dict[str, Any]:
    """EKS AMI releases (tags vYYYYMMDD), and for each pinned release the x86_64 AL2023 AMIs it lists for each
    Kubernetes version the cluster config allows."""
    tags = sorted(tag for tag in sources.tags(EKS_AMI_REPO) if AMI_TAG.match(tag))
    pinned = sorted({alias.split("@")[1] for alias in (versions.GPU_AMI_ALIAS_PROD, versions.CPU_AMI_ALIAS_PROD)})
    # A release's notes land in CHANGELOG.md after its tag: read them on the default branch.
    commit = sources.commit(EKS_AMI_REPO, "HEAD" if EKS_AMI_REPO in sources.mirrors else "main")
    changelog = sources.text(EKS_AMI_REPO, commit, "CHANGELOG.md")
    releases = {}
    for tag in pinned:
        if tag not in tags:
            raise SystemExit(f"{tag} is not an {EKS_AMI_REPO} release; recent ones: {', '.join(tags[-8:])}")
        amis = {
            k8s: sorted(set(re.findall(rf"amazon-eks-node-al2023-x86_64-(?:nvidia|standard)-{k8s}-{tag}", changelog)))
            for k8s in versions.SUPPORTED_KUBERNETES_VERSIONS
        }
        releases[tag] = {"amis": amis, "source": source(EKS_AMI_REPO, commit, "CHANGELOG.md")}
    return {
        "source": {"repo": EKS_AMI_REPO, "url": f"https://github.com/{EKS_AMI_REPO}/releases", "what": "git tags"},
        "releaseTags": tags[-30:],
        "pinnedReleases": releases,
    }


# Runs inside the throwaway vLLM virtualenv: `vllm serve`'s own parser (vllm/entrypoints/cli/serve.py builds it
# with make_arg_parser, in entrypoints/common/cli_args.py since 0.3x, entrypoints/openai/cli_args.py before) and
# the quantization registry (vllm/model_executor/layers/quantization/__init__.py).
VLLM_DUMP = textwrap.dedent("""
    import json, vllm
    try:
        from vllm.entrypoints.common.cli_args import make_arg_parser
    except ImportError:
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    parser = make_arg_parser(FlexibleArgumentParser())
    accepted = {flag for flag in parser._option_string_actions if flag.startswith("--")}
    visible = {flag for action in parser._actions for flag in action.option_strings}
    deprecated = {flag for action in parser._actions for flag in action.option_strings
                  if getattr(action, "deprecated", False) or action in getattr(parser, "_deprecated", ())}
    print(json.dumps({"version": vllm.__version__, "flags": sorted(accepted),
                      "hidden": sorted(accepted - visible), "deprecated": sorted(deprecated & accepted),
                      "quantization": sorted(QUANTIZATION_METHODS)}))
""")


def vllm_facts(venv: Path) -> dict[str, Any]:
    version = versions.VLLM_VERSION
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"vllm=={version}"], check=True)
    # Without a GPU, vLLM needs telling to build its config defaults for the CPU platform.
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
    dumped = json.loads(subprocess.run([str(python), "-c", VLLM_DUMP], check=True, capture_output=True, text=True,
                                       env=env).stdout.splitlines()[-1])
    if dumped["version"] != version:
        raise SystemExit(f"the venv has vllm {dumped['version']}, the pin is {version}")
    return {
        "version": version,
        "source": {
            "package": f"vllm=={version} (PyPI)",
            "how": "option strings of make_arg_parser(FlexibleArgumentParser()) (the `vllm serve` parser) and "
                   "QUANTIZATION_METHODS, from the installed package on CPU (scripts/refresh-upstream.py)",
        },
        # Every spelling the parser accepts; of those, the ones kept only for backwards compatibility (hidden
        # from --help, like --no-enable-x for --disable-x) and the deprecated ones.
        "flags": dumped["flags"],
        "hiddenFlags": dumped["hidden"],
        "deprecatedFlags": dumped["deprecated"],
        "quantizationMethods": dumped["quantization"],
    }


def image_facts() -> dict[str, Any]:
    """Each image the platform pulls from a public registry exists at its tag (Docker Hub's tag API)."""
    images = {}
    repository, tag = versions.VLLM_IMAGE.split(":")
    url = f"https://hub.docker.com/v2/repositories/{repository}/tags/{tag}"
    found = json.loads(http(url))
    images[versions.VLLM_IMAGE] = {"exists": True, "digest": found.get("digest"), "source": {"url": url}}
    # The warm-capacity placeholder's pause image: the registry's OCI tag list.
    repository, tag = versions.PAUSE_IMAGE.removeprefix("registry.k8s.io/").split(":")
    url = f"https://registry.k8s.io/v2/{repository}/tags/list"
    images[versions.PAUSE_IMAGE] = {"exists": tag in json.loads(http(url))["tags"], "digest": None,
                                    "source": {"url": url}}
    # The gateway image is the project's own (serving/Dockerfile): nothing upstream to check.
    return images


def pulumi_eks_fact() -> dict[str, str]:
    """How the installed pulumi-eks takes the cluster version: a plain string handed to EKS (no enum to update)."""
    import importlib.metadata
    import inspect

    import pulumi_eks

    annotation = inspect.signature(pulumi_eks.ClusterArgs.__init__).parameters["version"].annotation
    if str not in getattr(annotation, "__args__", ()):
        raise SystemExit(f"pulumi_eks.ClusterArgs version is {annotation}, not a string: check it takes the pin")
    return {"package": f"pulumi-eks {importlib.metadata.version('pulumi-eks')} (PyPI)",
            "path": "pulumi_eks/cluster.py",
            "fact": "ClusterArgs.version is pulumi.Input[str] ('Desired Kubernetes master / control plane version'), "
                    "no enum: any version string EKS offers is accepted as given"}


def aws_facts(region: str) -> dict[str, Any]:
    """EKS Kubernetes versions with their support dates, and ElastiCache's Redis OSS engine versions: two read-only
    describe calls with the caller's AWS credentials (boto3, from the project's dev dependencies)."""
    import boto3

    eks = boto3.client("eks", region_name=region)
    described = [v for page in eks.get_paginator("describe_cluster_versions").paginate(includeAll=True)
                 for v in page["clusterVersions"]]
    elasticache = boto3.client("elasticache", region_name=region)
    engines = [v["EngineVersion"] for page in elasticache.get_paginator("describe_cache_engine_versions").paginate(
        Engine="redis") for v in page["CacheEngineVersions"]]

    def day(value: Any) -> str | None:
        return value.date().isoformat() if value else None

    return {
        "eks": {
            "source": {"url": "https://docs.aws.amazon.com/eks/latest/APIReference/API_DescribeClusterVersions.html",
                       "region": region},
            # Listed with a release date = offered (components/upstream.py eks_version_problems).
            "versions": {v["clusterVersion"]: {"released": day(v.get("releaseDate")),
                                               "endOfStandardSupport": day(v.get("endOfStandardSupportDate")),
                                               "endOfExtendedSupport": day(v.get("endOfExtendedSupportDate"))}
                         for v in sorted(described, key=lambda v: version_key(v["clusterVersion"]))},
            "pulumiEks": pulumi_eks_fact(),
        },
        "elasticacheRedis": {
            "source": {"url": "https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/"
                              "API_DescribeCacheEngineVersions.html", "region": region},
            "engineVersions": sorted(set(engines), key=version_key),
        },
    }


def write(name: str, facts: dict[str, Any], checked: str) -> None:
    path = FACTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"checked": checked, **facts}, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="charts,karpenter,lbc,ami,vllm,images,aws")
    parser.add_argument("--region", default="us-west-2", help="for the AWS service facts (needs credentials)")
    parser.add_argument("--mirror", action="append", default=[], help="owner/name=git-dir, read instead of GitHub")
    parser.add_argument("--vllm-venv", type=Path, default=Path("/tmp/vllm-venv"))
    parser.add_argument("--checked", default=datetime.date.today().isoformat(), help="date recorded as checked")
    args = parser.parse_args()
    only = set(args.only.split(","))
    sources = Sources({repo: Path(directory) for repo, directory in (m.split("=", 1) for m in args.mirror)})
    charts = chart_facts(sources) if only & {"charts", "lbc"} else {}
    if "charts" in only:
        write("charts", {"charts": charts}, args.checked)
    if "karpenter" in only:
        write("karpenter-controller-policy", karpenter_facts(sources), args.checked)
        write("karpenter-compatibility", karpenter_compatibility(sources), args.checked)
    if "lbc" in only:
        write("lb-controller-iam-policy", lbc_facts(sources, charts), args.checked)
    if "ami" in only:
        write("eks-ami", ami_facts(sources), args.checked)
    if "vllm" in only:
        write("vllm", vllm_facts(args.vllm_venv), args.checked)
    if "images" in only:
        write("images", {"images": image_facts()}, args.checked)
    if "aws" in only:
        write("aws", aws_facts(args.region), args.checked)


if __name__ == "__main__":
    main()
