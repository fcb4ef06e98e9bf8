"""Realistic answers from a pretend AWS for the offline engine: ids, ARNs, endpoints and invokes.

Every value is derived from the resource's name, so the same program gives the same graph on every run.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"
Outputs = dict[str, Any]

# EC2 id prefixes, so that ids in the graph look like the ones AWS hands out.
_EC2_ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:ec2/flowLog:FlowLog": "fl",
}


# Route 53 hosted zone id of Application Load Balancers per region (what the ELB API returns as
# CanonicalHostedZoneId), from AWS's "Elastic Load Balancing endpoints and quotas" table,
# https://docs.aws.amazon.com/general/latest/gr/elb.html (checked 2026-11-30).
_ALB_HOSTED_ZONE_IDS = {
    "us-east-1": "Z35SXDOTRQ7X7K",
    "us-east-2": "Z3AADJGX6KTTL2",
    "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5",
    "eu-west-1": "Z32O12XQLNTSW2",
    "eu-central-1": "Z215JYRZR1TBD5",
}


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _uuid(seed: str) -> str:
    digits = _digest(seed, length=32)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers per type token; anything not listed still gets an id, an ARN and its inputs back."""

    def __init__(
        self,
        region: str,
        caller_arn: str = f"arn:aws:iam::{ACCOUNT_ID}:user/offline-preview",
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        self.region = region
        self.caller_arn = caller_arn
        # What DescribeSnapshots says of the GPU pool's image snapshot: by default a completed, encrypted one that
        # `llm-platform images snapshot` tagged (the offline preview passes the tags for the stack's images).
        self.snapshot = {"state": "completed", "encrypted": True, "volumeSize": 100, "tags": {}, **(snapshot or {})}
        self._outputs: dict[str, Callable[[str, Outputs], Outputs]] = {
            "aws:iam/role:Role": self._iam_role,
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:kms/key:Key": self._kms_key,
            "aws:ec2/launchTemplate:LaunchTemplate": lambda name, inputs: {"latestVersion": 1},
            "aws:elasticache/replicationGroup:ReplicationGroup": self._replication_group,
            "aws:secretsmanager/secret:Secret": self._secret,
            "aws:cloudwatch/logGroup:LogGroup": self._log_group,
            "aws:acm/certificate:Certificate": self._certificate,
            "aws:acm/certificateValidation:CertificateValidation": lambda name, inputs: {
                "certificateArn": inputs["certificateArn"]
            },
            "aws:route53/record:Record": lambda name, inputs: {"fqdn": inputs["name"].rstrip(".")},
            "random:index/randomPassword:RandomPassword": lambda name, inputs: {
                "result": _digest("password", name, length=int(inputs["length"]))
            },
            "eks:index:Cluster": self._eks_cluster,
            "aws:sqs/queue:Queue": self._queue,
            "kubernetes:networking.k8s.io/v1:Ingress": self._alb_ingress,
            "random:index/randomString:RandomString": lambda name, inputs: {
                "result": _digest("string", name, length=int(inputs["length"]))
            },
            "aws:ecr/repository:Repository": self._ecr_repository,
            "docker-build:index:Image": self._built_image,
        }
        self._invokes: dict[str, Callable[[dict[str, Any]], Outputs]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._availability_zones,
            "aws:index/getCallerIdentity:getCallerIdentity": lambda args: {
                "accountId": ACCOUNT_ID,
                "arn": self.caller_arn,
                "userId": "AIDAOFFLINEPREVIEW",
                "id": ACCOUNT_ID,
            },
            "aws:index/getRegion:getRegion": lambda args: {"name": self.region, "region": self.region},
            "aws:index/getPartition:getPartition": lambda args: {"partition": "aws", "dnsSuffix": "amazonaws.com"},
            "aws:lb/getLoadBalancer:getLoadBalancer": self._load_balancer,
            "aws:secretsmanager/getSecretVersion:getSecretVersion": self._secret_version,
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": self._ecr_token,
            "aws:ebs/getSnapshot:getSnapshot": lambda args: {
                **self.snapshot, "id": args["snapshotIds"][0], "snapshotId": args["snapshotIds"][0],
            },
        }

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, Outputs]:
        inputs = dict(args.inputs)
        prefix = _EC2_ID_PREFIXES.get(args.typ)
        given_name = inputs.get("name")
        physical_name = given_name if isinstance(given_name, str) else f"{args.name}-{_digest(args.name, length=7)}"
        resource_id = f"{prefix}-{_digest(args.typ, args.name)}" if prefix else physical_name
        service = args.typ.split(":")[1].split("/")[0]
        outputs = {
            "id": resource_id,
            "arn": f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{args.typ.rsplit(':', 1)[-1].lower()}/{resource_id}",
            **inputs,
        }
        if "name" not in outputs and args.typ.startswith("aws:"):
            outputs["name"] = physical_name
        handler = self._outputs.get(args.typ)
        if handler:
            outputs.update(handler(physical_name, inputs))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[Outputs, list[tuple[str, str]]]:
        handler = self._invokes.get(args.token)
        if handler is None:
            raise NotImplementedError(f"no offline answer for invoke {args.token}; add one to infra/mocks.py")
        return handler(args.args), []

    def _secret_version(self, args: dict[str, Any]) -> Outputs:
        """A JSON secret with every key a receiver may need (the alert-routing secret the user creates)."""
        keys = ("slackWebhookUrl", "pagerdutyRoutingKey", "webhookToken")
        return {"secretString": json.dumps({key: f"offline-{key}" for key in keys}), "secretId": args["secretId"]}

    def _availability_zones(self, args: dict[str, Any]) -> Outputs:
        suffixes = "abcd"
        return {
            "names": [f"{self.region}{suffix}" for suffix in suffixes],
            "zoneIds": [f"{self.region[:2]}w2-az{index + 1}" for index in range(len(suffixes))],
            "id": self.region,
        }

    def _iam_role(self, name: str, inputs: Outputs) -> Outputs:
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}", "name": name, "uniqueId": f"AROA{_digest(name)}"}

    def _bucket(self, name: str, inputs: Outputs) -> Outputs:
        bucket = inputs.get("bucket", name)
        return {
            "id": bucket,
            "bucket": bucket,
            "arn": f"arn:aws:s3:::{bucket}",
            "bucketRegionalDomainName": f"{bucket}.s3.{self.region}.amazonaws.com",
            "region": self.region,
        }

    def _kms_key(self, name: str, inputs: Outputs) -> Outputs:
        key_id = _uuid(name)
        return {"keyId": key_id, "arn": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{key_id}"}

    def _replication_group(self, name: str, inputs: Outputs) -> Outputs:
        suffix = f"{_digest(name, length=6)}.{self.region}.cache.amazonaws.com"
        return {
            "primaryEndpointAddress": f"master.{name}.{suffix}",
            "readerEndpointAddress": f"replica.{name}.{suffix}",
            "port": inputs.get("port", 6379),
        }

    def _secret(self, name: str, inputs: Outputs) -> Outputs:
        return {"arn": f"arn:aws:secretsmanager:{self.region}:{ACCOUNT_ID}:secret:{name}-{_digest(name, length=6)}"}

    def _log_group(self, name: str, inputs: Outputs) -> Outputs:
        group = inputs.get("name") or inputs.get("namePrefix", "/aws/") + _digest(name, length=8)
        return {"name": group, "arn": f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{group}"}

    def _certificate(self, name: str, inputs: Outputs) -> Outputs:
        domain = inputs["domainName"]
        return {
            "arn": f"arn:aws:acm:{self.region}:{ACCOUNT_ID}:certificate/{_uuid(domain)}",
            "domainValidationOptions": [
                {
                    "domainName": domain,
                    "resourceRecordName": f"_{_digest(domain, length=32)}.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{_digest('value', domain, length=32)}.acm-validations.aws.",
                }
            ],
        }

    def _eks_cluster(self, name: str, inputs: Outputs) -> Outputs:
        """pulumi-eks's Cluster is one opaque resource under mocks: supply the outputs the program reads."""
        cluster_name = inputs.get("name", name)
        oidc_id = _digest(cluster_name, length=32).upper()
        issuer = f"https://oidc.eks.{self.region}.amazonaws.com/id/{oidc_id}"
        endpoint = f"https://{oidc_id}.gr7.{self.region}.eks.amazonaws.com"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": "LS0t"}}],
            "contexts": [{"name": "aws", "context": {"cluster": cluster_name, "user": "aws"}}],
            "current-context": "aws",
            "users": [
                {
                    "name": "aws",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", self.region],
                        }
                    },
                }
            ],
        }
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "clusterSecurityGroupId": f"sg-{_digest('cluster-sg', cluster_name)}",
            "oidcProviderArn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer.removeprefix('https://')}",
            "oidcProviderUrl": issuer.removeprefix("https://"),
            "oidcIssuer": issuer,
        }

    def _queue(self, name: str, inputs: Outputs) -> Outputs:
        return {
            "name": name,
            "arn": f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}",
            "url": f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}",
        }

    def _registry(self) -> str:
        return f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com"

    def _ecr_repository(self, name: str, inputs: Outputs) -> Outputs:
        return {
            "arn": f"arn:aws:ecr:{self.region}:{ACCOUNT_ID}:repository/{name}",
            "registryId": ACCOUNT_ID,
            "repositoryUrl": f"{self._registry()}/{name}",
        }

    def _ecr_token(self, args: dict[str, Any]) -> Outputs:
        """Docker login for the account's registry: user AWS and a 12-hour token, as ECR hands them out."""
        return {
            "id": self.region,
            "userName": "AWS",
            "password": f"offline-{_digest('ecr-token', length=32)}",
            "authorizationToken": f"QVdTOm9mZmxpbmUt{_digest('ecr-auth', length=32)}",
            "proxyEndpoint": f"https://{self._registry()}",
            "expiresAt": "2026-12-01T00:00:00Z",
            "registryId": args.get("registryId", ACCOUNT_ID),
        }

    def _built_image(self, name: str, inputs: Outputs) -> Outputs:
        """What BuildKit reports after pushing: the manifest digest, and the first tag pinned to it."""
        tags = inputs.get("tags") or []
        digest = f"sha256:{hashlib.sha256(json.dumps([*tags, name]).encode()).hexdigest()}"
        return {"digest": digest, "ref": f"{tags[0]}@{digest}" if tags else "", "contextHash": _digest("ctx", name)}

    def _alb_dns_name(self, load_balancer_name: str) -> str:
        """ELB's DNS name for an ALB: `<name>-<number>.<region>.elb.amazonaws.com`."""
        number = int(_digest("alb-id", load_balancer_name, length=8), 16)
        return f"{load_balancer_name}-{number}.{self.region}.elb.amazonaws.com"

    def _alb_ingress(self, name: str, inputs: Outputs) -> Outputs:
        """The status the AWS Load Balancer Controller writes once it has provisioned the ALB, named by the
        `load-balancer-name` annotation or else `k8s-<namespace>-<ingress>-<hash>`."""
        metadata = inputs.get("metadata", {})
        annotations = metadata.get("annotations") or {}
        load_balancer_name = annotations.get("alb.ingress.kubernetes.io/load-balancer-name") or (
            f"k8s-{metadata.get('namespace', 'default')[:8]}-{metadata.get('name', name)[:8]}-"
            f"{_digest('alb', name, length=10)}"
        )
        hostname = self._alb_dns_name(load_balancer_name)
        return {"status": {"loadBalancer": {"ingress": [{"hostname": hostname}]}}}

    def _load_balancer(self, args: dict[str, Any]) -> Outputs:
        name = args["name"]
        return {
            "name": name,
            "arn": f"arn:aws:elasticloadbalancing:{self.region}:{ACCOUNT_ID}:loadbalancer/app/{name}/"
            f"{_digest('alb', name, length=16)}",
            "dnsName": self._alb_dns_name(name),
            "zoneId": _ALB_HOSTED_ZONE_IDS[self.region],
            "loadBalancerType": "application",
            "internal": False,
        }
