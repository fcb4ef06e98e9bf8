"""Turns one validated `PlatformConfig` into the platform's components and the stack's outputs."""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.cache import Cache, CacheArgs
from components.cluster import Cluster, ClusterArgs
from components.edge import Edge, EdgeArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.network import Network, NetworkArgs
from stacks.addons import build_addons
from stacks.config import PlatformConfig
from stacks.serving import build_serving


@dataclass(frozen=True)
class PlatformCore:
    """The cloud layer, handed to the add-ons and workloads that run on it."""

    config: PlatformConfig
    project: str
    stack: str
    aws_provider: aws.Provider
    network: Network
    cluster: Cluster
    cache: Cache
    model_store: ModelStore
    edge: Edge

    @property
    def tags(self) -> dict[str, str]:
        return stack_tags(self.config, self.project, self.stack)


def stack_tags(config: PlatformConfig, project: str, stack: str) -> dict[str, str]:
    """Cost-allocation tags on everything the stack creates: AWS resources get them as the provider's default
    tags, instances Karpenter launches through their EC2NodeClass."""
    return {"Project": project, "Stack": stack, "ManagedBy": "pulumi", **config.tags}


def build_platform(config: PlatformConfig, project: str, stack: str) -> dict[str, pulumi.Input[object]]:
    """Declare every resource of the stack; returns the stack outputs (secrets already marked)."""
    cluster_name = config.cluster.name or f"llm-{stack}"
    # Prod also protects its state (secrets key, model bucket and key, Redis): `pulumi destroy` and replacements
    # stop at them until `pulumi state unprotect`; dev stays destroyable in one command.
    production = config.production
    aws_provider = aws.Provider(
        "aws",
        region=config.region,
        default_tags={"tags": stack_tags(config, project, stack)},
    )
    on_aws = pulumi.ResourceOptions(providers=[aws_provider])
    caller = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=aws_provider))

    network = Network(
        "network", NetworkArgs(config=config.network, region=config.region, cluster_name=cluster_name), on_aws
    )
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            config=config.cluster,
            cluster_name=cluster_name,
            kubernetes_version=config.cluster.version,
            deployer_arn=caller.arn,
            vpc_id=network.vpc_id,
            public_subnet_ids=network.public_subnet_ids,
            private_subnet_ids=network.private_subnet_ids,
            key_deletion_window_days=30 if production else 7,
            protect=production,
        ),
        on_aws,
    )
    cache = Cache(
        "cache",
        CacheArgs(
            config=config.cache,
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            client_security_group_id=cluster.cluster_security_group_id,
            protect=production,
        ),
        on_aws,
    )
    account_id = caller.account_id
    model_store = ModelStore(
        "model-store",
        ModelStoreArgs(
            config=config.model_store,
            bucket_name=config.model_store.bucket_name or f"{project}-{stack}-models-{account_id}",
            protect=production,
            compile_cache_writable=config.serving.vllm.shared_compile_cache,
        ),
        on_aws,
    )
    edge = Edge(
        "edge",
        EdgeArgs(
            config=config.edge,
            cluster_name=cluster.cluster_name,
            region=config.region,
            vpc_id=network.vpc_id,
            controller_replicas=2 if production else 1,
            kubernetes_provider=cluster.provider,
            system_ready=cluster.system_ready,
        ),
        on_aws,
    )

    core = PlatformCore(
        config=config,
        project=project,
        stack=stack,
        aws_provider=aws_provider,
        network=network,
        cluster=cluster,
        cache=cache,
        model_store=model_store,
        edge=edge,
    )
    addons = build_addons(core)
    serving_outputs = build_serving(core, addons)

    return {
        "vpcId": network.vpc_id,
        "privateSubnetIds": network.private_subnet_ids,
        "publicSubnetIds": network.public_subnet_ids,
        "availabilityZones": network.availability_zones,
        "clusterName": cluster.cluster_name,
        "kubeconfig": cluster.kubeconfig,
        "oidcIssuer": cluster.oidc_issuer,
        "modelBucketName": model_store.bucket_name,
        "modelRegistryTableName": model_store.registry_table_name,
        "modelReaderRoleArn": model_store.reader_role_arn,
        "redisEndpoint": cache.primary_endpoint,
        "redisPort": cache.port,
        "redisAuthSecretArn": cache.auth_secret_arn,
        "loadBalancerControllerRoleArn": edge.controller_role_arn,
        "certificateArn": edge.certificate_arn,
        "webAclArn": edge.web_acl_arn,
        **addons.outputs,
        **serving_outputs,
    }
