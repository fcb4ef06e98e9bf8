"""The offline policy runner: evaluates the CrossGuard pack in `policies/` over a resource graph the way the
Pulumi engine does.

The pack runs as its own process (`python policies`), prints its port and serves the analyzer gRPC protocol; the
runner configures it (`GetAnalyzerInfo`, `Configure` with the schema defaults and `--policy-pack-config`
values, `ConfigureStack`), sends every resource to `Analyze`, then the whole stack to `AnalyzeStack`, with the
properties serialized as the engine serializes them (secrets as secret values) and options, parent and
dependencies where the graph has them. Nothing in the pack knows it runs offline.
"""

import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import grpc
import typer
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from stacks.config import PlatformConfig

console = Console(emoji=False, highlight=False)
errors = Console(stderr=True, emoji=False, highlight=False)
PACK_DIR = Path(__file__).resolve().parent.parent / "policies"
SECRET_MASK = "[secret]"
# The engine's wire signature of a secret value (pulumi sdk/go/common/resource/properties.go).
SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
PORT_TIMEOUT_S = 60
LEVELS = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory",
          analyzer_pb2.REMEDIATE: "remediate", analyzer_pb2.DISABLED: "disabled"}
LEVEL_VALUES = {name: value for value, name in LEVELS.items()}
SEVERITIES = {analyzer_pb2.POLICY_SEVERITY_UNSPECIFIED: "", analyzer_pb2.POLICY_SEVERITY_LOW: "low",
              analyzer_pb2.POLICY_SEVERITY_MEDIUM: "medium", analyzer_pb2.POLICY_SEVERITY_HIGH: "high",
              analyzer_pb2.POLICY_SEVERITY_CRITICAL: "critical"}


class PolicyInputError(Exception):
    """A graph or config file that cannot be read: one line for the user, exit code 2."""


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str
    urn: str
    message: str
    level: str
    severity: str


@dataclass
class Report:
    pack: str
    version: str
    stack: str
    resources: int
    policies: int
    violations: list[Violation]

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]

    def to_json(self) -> dict[str, Any]:
        return {
            "pack": self.pack, "version": self.version, "stack": self.stack, "resources": self.resources,
            "policies": self.policies, "violations": [asdict(v) for v in self.violations],
            "summary": {"violations": len(self.violations), "mandatory": len(self.mandatory),
                        "advisory": len(self.violations) - len(self.mandatory)},
        }

    def summary(self) -> str:
        return (
            f"policy pack {self.pack} {self.version}: {len(self.violations)} violation(s), {len(self.mandatory)} "
            f"mandatory, over {self.resources} resources of stack {self.stack} ({self.policies} policies)"
        )


def load_graph(path: Path) -> dict[str, Any]:
    """A graph written by `llm-platform preview --json`; PolicyInputError (one line) if missing or malformed."""
    try:
        graph = json.loads(path.read_text())
    except FileNotFoundError:
        raise PolicyInputError(f"{path}: no such graph file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PolicyInputError(f"{path}: not a JSON graph ({str(error).splitlines()[0]})") from None
    resources = graph.get("resources") if isinstance(graph, dict) else None
    if not isinstance(resources, list) or not all(
        isinstance(r, dict) and isinstance(r.get("urn"), str) and isinstance(r.get("type"), str) for r in resources
    ):
        raise PolicyInputError(f"{path}: not a resource graph (expected 'resources': a list of objects with urn, type)")
    return graph


def load_config(path: Path | None) -> dict[str, Any]:
    """A `--policy-pack-config` file: {policy: level | {enforcementLevel?, property: value}, "all": level}."""
    if path is None:
        return {}
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise PolicyInputError(f"{path}: no such policy config file") from None
    except (OSError, ValueError) as error:
        raise PolicyInputError(f"{path}: not a JSON policy config ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise PolicyInputError(f"{path}: a policy config is a JSON object keyed by policy name")
    return config


def default_config_file(stack: str) -> Path | None:
    path = PACK_DIR / "config" / f"{stack}.json"
    return path if path.exists() else None


def engine_value(value: Any) -> Any:
    """A graph value as the engine puts it on the wire: masked secrets become secret values."""
    if value == SECRET_MASK:
        return {**SECRET_SIG, "value": SECRET_MASK}
    if isinstance(value, dict):
        return {key: engine_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [engine_value(item) for item in value]
    return value


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(engine_value(dict(values)))
    return struct


def _seconds(duration: Any) -> float:
    """A Go duration as the graph writes custom timeouts ("1800s", "1h30m") in seconds, as the proto wants."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}
    return sum(float(amount) * units[unit] for amount, unit in re.findall(r"(\d+(?:\.\d+)?)([hms]?)", str(duration)))


def _options(resource: Mapping[str, Any]) -> analyzer_pb2.AnalyzerResourceOptions:
    options = resource.get("options") or {}
    timeouts = options.get("customTimeouts") or {}
    message = analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(options.get("protect", False)),
        ignoreChanges=[str(change) for change in options.get("ignoreChanges") or []],
        parent=resource.get("parent") or "",
    )
    if "deleteBeforeReplace" in options:
        message.deleteBeforeReplace = bool(options["deleteBeforeReplace"])
        message.deleteBeforeReplaceDefined = True
    if timeouts:
        message.customTimeouts.CopyFrom(analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
            **{op: _seconds(timeouts[op]) for op in ("create", "update", "delete") if op in timeouts}
        ))
    return message


class _Graph:
    """The graph's resources by URN, and their providers (`options.provider` is `<provider URN>::<id>`)."""

    def __init__(self, graph: Mapping[str, Any]) -> None:
        self.resources: list[dict[str, Any]] = list(graph["resources"])
        self.by_urn = {resource["urn"]: resource for resource in self.resources}

    def provider(self, resource: Mapping[str, Any]) -> analyzer_pb2.AnalyzerProviderResource | None:
        reference = str((resource.get("options") or {}).get("provider") or "")
        provider = self.by_urn.get(reference.rsplit("::", 1)[0]) if "::" in reference else None
        if provider is None:
            return None
        return analyzer_pb2.AnalyzerProviderResource(
            type=provider["type"], urn=provider["urn"], name=provider.get("name", ""),
            properties=_struct(provider.get("inputs") or {}),
        )

    def analyze_request(self, resource: Mapping[str, Any]) -> analyzer_pb2.AnalyzeRequest:
        request = analyzer_pb2.AnalyzeRequest(
            type=resource["type"], urn=resource["urn"], name=resource.get("name", ""),
            properties=_struct(resource.get("inputs") or {}), options=_options(resource),
        )
        provider = self.provider(resource)
        if provider is not None:
            request.provider.CopyFrom(provider)
        return request

    def stack_request(self) -> analyzer_pb2.AnalyzeStackRequest:
        request = analyzer_pb2.AnalyzeStackRequest()
        for resource in self.resources:
            entry = request.resources.add(
                type=resource["type"], urn=resource["urn"], name=resource.get("name", ""),
                properties=_struct(resource.get("inputs") or {}), options=_options(resource),
                parent=resource.get("parent") or "", dependencies=list(resource.get("dependencies") or []),
            )
            for key, urns in (resource.get("propertyDependencies") or {}).items():
                entry.propertyDependencies[key].urns.extend(urns)
            provider = self.provider(resource)
            if provider is not None:
                entry.provider.CopyFrom(provider)
        return request


@contextmanager
def running_pack(
    pack_dir: Path = PACK_DIR, project: str = "", stack: str = ""
) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """Start the pack as its own process, as the engine's `pulumi-analyzer-policy-python` does (pulumi/pulumi
    sdk/python/dist: `python -u -m pulumi.policy <engine address> <pack dir>`, the stack named in the
    environment), and connect to the port it prints."""
    environment = {**os.environ, "PULUMI_PROJECT": project, "PULUMI_STACK": stack, "PULUMI_DRY_RUN": "true"}
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(pack_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=pack_dir, env=environment,
    )
    try:
        port = _read_port(process)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=PORT_TIMEOUT_S)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _read_port(process: subprocess.Popen[bytes]) -> int:
    assert process.stdout is not None and process.stderr is not None
    ready, _, _ = select.select([process.stdout], [], [], PORT_TIMEOUT_S)
    line = process.stdout.readline().decode().strip() if ready else ""
    if not line.isdigit():
        process.terminate()
        error = process.stderr.read().decode().strip().splitlines()
        raise RuntimeError(f"the policy pack did not start: {error[-1] if error else 'no port printed'}")
    return int(line)


def _policy_config(info: analyzer_pb2.AnalyzerInfo, config: Mapping[str, Any]) -> analyzer_pb2.ConfigureAnalyzerRequest:
    """Each policy's configuration as the engine sends it: schema defaults, then the file's values; "all" sets
    every policy's enforcement level."""
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    unknown = sorted(set(config) - {policy.name for policy in info.policies} - {"all"})
    if unknown:
        raise PolicyInputError(f"policy config names unknown policies: {', '.join(unknown)}")
    for policy in info.policies:
        given = config.get(policy.name, config.get("all"))
        level = policy.enforcementLevel
        properties = {key: spec["default"] for key, spec in _schema(policy).items() if "default" in spec}
        if isinstance(given, str):
            level = _level(given, policy.name)
        elif isinstance(given, dict):
            values = dict(given)
            if "enforcementLevel" in values:
                level = _level(values.pop("enforcementLevel"), policy.name)
            elif isinstance(config.get("all"), str):
                level = _level(config["all"], policy.name)
            properties.update(values)
        entry = request.policyConfig[policy.name]
        entry.enforcementLevel = level
        entry.properties.update(properties)
    return request


def _schema(policy: analyzer_pb2.PolicyInfo) -> dict[str, Any]:
    return json_format.MessageToDict(policy.configSchema.properties) if policy.HasField("configSchema") else {}


def _level(value: Any, policy: str) -> int:
    if value not in LEVEL_VALUES:
        allowed = list(LEVEL_VALUES)
        raise PolicyInputError(f"policy config {policy}: enforcement level {value!r} is not one of {allowed}")
    return LEVEL_VALUES[value]


def evaluate(stub: analyzer_pb2_grpc.AnalyzerStub, graph: Mapping[str, Any], config: Mapping[str, Any]) -> Report:
    info = stub.GetAnalyzerInfo(empty_pb2.Empty())
    stub.Configure(_policy_config(info, config))
    stack, project = str(graph.get("stack", "")), str(graph.get("project", ""))
    stub.ConfigureStack(analyzer_pb2.AnalyzerStackConfigureRequest(stack=stack, project=project, dry_run=True))
    resources = _Graph(graph)
    names = {resource["urn"]: resource.get("name", "") for resource in resources.resources}
    violations: list[Violation] = []
    for resource in resources.resources:
        response = stub.Analyze(resources.analyze_request(resource))
        violations += [_violation(d, d.urn or resource["urn"], names) for d in response.diagnostics]
    response = stub.AnalyzeStack(resources.stack_request())
    violations += [_violation(d, d.urn, names) for d in response.diagnostics]
    return Report(info.name, pack_version(), stack, len(resources.resources), len(info.policies), violations)


def _violation(diagnostic: analyzer_pb2.AnalyzeDiagnostic, urn: str, names: Mapping[str, str]) -> Violation:
    # The SDK prefixes each message with the policy's description; the table shows the specific part.
    message = diagnostic.message.split("\n", 1)[-1]
    return Violation(
        policy=diagnostic.policyName, resource=names.get(urn, "(stack)"), urn=urn, message=message,
        level=LEVELS.get(diagnostic.enforcementLevel, "advisory"), severity=SEVERITIES.get(diagnostic.severity, ""),
    )


def pack_version(pack_dir: Path = PACK_DIR) -> str:
    """The pack's version as the CLI takes it: from PulumiPolicy.yaml (the Python SDK always answers 0.0.1)."""
    return str(yaml.safe_load((pack_dir / "PulumiPolicy.yaml").read_text()).get("version", ""))


def run_policy(graph: Mapping[str, Any], config: Mapping[str, Any], pack_dir: Path = PACK_DIR) -> Report:
    """The pack's verdict on a graph; RuntimeError (one line) if the pack does not start or a rule fails."""
    with running_pack(pack_dir, str(graph.get("project", "")), str(graph.get("stack", ""))) as stub:
        try:
            return evaluate(stub, graph, config)
        except grpc.RpcError as error:
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise RuntimeError(f"the policy pack failed: {str(details).strip().splitlines()[-1]}") from None


def policy_command(
    stack: Annotated[
        str | None, typer.Option("--stack", "-s", help="Build this stack's graph offline and check it.")
    ] = None,
    graph_file: Annotated[
        Path | None, typer.Option("--graph", help="Check a graph written by `preview --json` instead.")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="Pack config, as --policy-pack-config (default: policies/config/<stack>.json)."),
    ] = None,
    write_config: Annotated[
        Path | None,
        typer.Option("--write-config", help="Also write the pack config used (with the stack's cost figures) here, "
                     "for `pulumi preview --policy-pack policies --policy-pack-config FILE`."),
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    project_dir: Annotated[Path, typer.Option("--project-dir", help="Folder holding the stack files.")] = Path("."),
) -> None:
    """Check a stack against the CrossGuard pack in policies/, over the analyzer protocol as `pulumi preview
    --policy-pack policies` would. Exit 1 if a mandatory policy fails."""
    if (stack is None) == (graph_file is None) or output not in ("table", "json"):
        _fail("give exactly one of --stack or --graph, and --format table or json")
    try:
        graph, platform = _graph_and_config(project_dir, stack, graph_file)
        name = str(graph.get("stack", stack or ""))
        config = pack_config(graph, load_config(config_file or default_config_file(name)), platform)
        if write_config:
            write_config.write_text(json.dumps(config, indent=2) + "\n")
        report = run_policy(graph, config)
    except (PolicyInputError, RuntimeError) as error:
        _fail(str(error))
    if output == "json":
        console.print_json(json.dumps(report.to_json()))
    else:
        print_report(report)
    raise typer.Exit(code=1 if report.mandatory else 0)


def pack_config(
    graph: Mapping[str, Any], file_config: Mapping[str, Any], platform: "PlatformConfig | None"
) -> dict[str, Any]:
    """The pack config: the file's, plus what the stack itself decides, so nothing is written twice: its budget,
    the cost model's GPU node-hour price and its projection (`infra/cost`: the figures `llm-platform cost` and
    the budget alert use). The projection is the month before traffic (fixed costs and the minimum GPU
    replicas): a floor that the budget must cover whatever the traffic."""
    config = {name: dict(value) if isinstance(value, Mapping) else value for name, value in file_config.items()}
    if platform is None:
        return config
    from infra.cost.estimate import budget_status

    status = budget_status(dict(graph), platform)
    rule = config.setdefault("cost-within-budget", {})
    if not isinstance(rule, dict):  # an enforcement level alone: keep it, add the figures
        rule = config["cost-within-budget"] = {"enforcementLevel": rule}
    rule.update(gpuHourlyUsd=status["gpuNodeHourlyUsd"], monthlyBudgetUsd=status["budgetUsd"],
                projectedMonthlyUsd=status["projectedUsd"])
    return config


def _graph_and_config(
    project_dir: Path, stack: str | None, graph_file: Path | None
) -> tuple[dict[str, Any], "PlatformConfig | None"]:
    """The graph to check and, where the project has the graph's stack file, that stack's validated config."""
    from infra.offline import preview_stack
    from stacks.loader import ConfigError, load_stack_file, stack_file

    try:
        if graph_file is None:
            built = preview_stack(project_dir, str(stack))
            return built.to_json(), built.config
        graph = load_graph(graph_file)
        name = str(graph.get("stack", ""))
        found = bool(name) and stack_file(project_dir, name).is_file()
        return graph, load_stack_file(project_dir, name) if found else None
    except ConfigError as error:
        raise PolicyInputError(str(error)) from None


def _fail(message: str) -> NoReturn:
    errors.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def print_report(report: Report) -> None:
    if report.violations:
        table = Table(title=f"Policy violations ({report.stack})")
        for column in ("rule", "resource", "message", "level", "severity"):
            table.add_column(column, overflow="fold")
        for v in sorted(report.violations, key=lambda v: (v.level != "mandatory", v.policy, v.urn)):
            table.add_row(v.policy, Text(f"{v.resource}\n{v.urn}", no_wrap=False), Text(v.message), v.level, v.severity)
        # Full URNs and messages: a terminal gets its own width, a pipe or CI log a wide one.
        Console(emoji=False, highlight=False, width=None if console.is_terminal else 220).print(table)
    console.print(report.summary())


def print_policy_summary(graph: Mapping[str, Any], platform: "PlatformConfig") -> None:
    """The policy summary line `preview` prints under the graph (the stack's own policy config)."""
    try:
        file_config = load_config(default_config_file(str(graph.get("stack", ""))))
        report = run_policy(graph, pack_config(graph, file_config, platform))
    except (PolicyInputError, RuntimeError) as error:
        console.print(f"policy check not run: {error}")
        return
    console.print(report.summary() + ("; run `llm-platform policy` for details" if report.violations else ""))
