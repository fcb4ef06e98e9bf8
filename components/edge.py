"""The way in: AWS Load Balancer Controller (ALBs for Ingresses), and, with a domain, its certificate and WAF."""

from dataclasses import dataclass
from typing import Self

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components import iam
from components.config_base import StrictModel
from components.helm import pinned_release
from components.versions import AWS_LOAD_BALANCER_CONTROLLER

LBC_NAMESPACE = "kube-system"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
DNS_NAME_PATTERN = r"^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"


class EdgeConfig(StrictModel):
    domain: str | None = Field(default=None, pattern=DNS_NAME_PATTERN)
    hosted_zone_id: str | None = Field(default=None, pattern=r"^Z[A-Z0-9]{1,31}$")
    waf_rate_limit_per_5min: int = Field(default=2000, ge=10, le=2_000_000_000)

    @model_validator(mode="after")
    def zone_needs_domain(self) -> Self:
        if self.hosted_zone_id and not self.domain:
            raise ValueError("hostedZoneId is set but domain is not; the zone only validates the domain's certificate")
        return self


_ELB = "elasticloadbalancing"
# The controller only touches load balancers, target groups and security groups it tagged as its own.
_OWN_RESOURCE = {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
_UNTAGGED_REQUEST_OWN_RESOURCE = {
    "Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "true", "aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}
}


def _allow(actions: list[str], resource: str | list[str] = "*", condition: dict | None = None) -> iam.Statement:
    statement: iam.Statement = {"Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


# The controller's reference policy at the chart's appVersion (kubernetes-sigs/aws-load-balancer-controller
# docs/install/iam_policy.json, recorded in components/upstream/): the tests require every action it grants.
LOAD_BALANCER_CONTROLLER_POLICY: list[iam.Statement] = [
    _allow(
        ["iam:CreateServiceLinkedRole"],
        condition={"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
    ),
    _allow(
        [
            "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
            "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:GetCoipPoolUsage", "ec2:DescribeCoipPools",
            "ec2:GetSecurityGroupsForVpc", "ec2:DescribeIpamPools", "ec2:DescribeRouteTables",
            f"{_ELB}:DescribeLoadBalancers", f"{_ELB}:DescribeLoadBalancerAttributes", f"{_ELB}:DescribeListeners",
            f"{_ELB}:DescribeListenerCertificates", f"{_ELB}:DescribeSSLPolicies", f"{_ELB}:DescribeRules",
            f"{_ELB}:DescribeTargetGroups", f"{_ELB}:DescribeTargetGroupAttributes",
            f"{_ELB}:DescribeTargetHealth", f"{_ELB}:DescribeTags", f"{_ELB}:DescribeTrustStores",
            f"{_ELB}:DescribeListenerAttributes", f"{_ELB}:DescribeCapacityReservation",
        ]
    ),
    _allow(
        [
            "cognito-idp:DescribeUserPoolClient", "acm:ListCertificates", "acm:DescribeCertificate",
            "iam:ListServerCertificates", "iam:GetServerCertificate", "waf-regional:GetWebACL",
            "waf-regional:GetWebACLForResource", "waf-regional:AssociateWebACL", "waf-regional:DisassociateWebACL",
            "wafv2:GetWebACL",
            "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
            "shield:GetSubscriptionState", "shield:DescribeProtection", "shield:CreateProtection",
            "shield:DeleteProtection",
        ]
    ),
    _allow(["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:CreateSecurityGroup"]),
    _allow(
        ["ec2:CreateTags"],
        "arn:aws:ec2:*:*:security-group/*",
        {
            "StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"},
            "Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"},
        },
    ),
    _allow(["ec2:CreateTags", "ec2:DeleteTags"], "arn:aws:ec2:*:*:security-group/*", _UNTAGGED_REQUEST_OWN_RESOURCE),
    _allow(
        ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"],
        condition=_OWN_RESOURCE,
    ),
    _allow(
        [f"{_ELB}:CreateLoadBalancer", f"{_ELB}:CreateTargetGroup"],
        condition={"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"}},
    ),
    _allow(
        [f"{_ELB}:CreateListener", f"{_ELB}:DeleteListener", f"{_ELB}:CreateRule", f"{_ELB}:DeleteRule"]
    ),
    _allow(
        [f"{_ELB}:AddTags", f"{_ELB}:RemoveTags"],
        [
            "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
            "arn:aws:elasticloadbalancing:*:*:loadbalancer/net/*/*",
            "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*/*",
        ],
        _UNTAGGED_REQUEST_OWN_RESOURCE,
    ),
    _allow(
        [f"{_ELB}:AddTags", f"{_ELB}:RemoveTags"],
        [
            "arn:aws:elasticloadbalancing:*:*:listener/net/*/*/*",
            "arn:aws:elasticloadbalancing:*:*:listener/app/*/*/*",
            "arn:aws:elasticloadbalancing:*:*:listener-rule/net/*/*/*",
            "arn:aws:elasticloadbalancing:*:*:listener-rule/app/*/*/*",
        ],
    ),
    _allow(
        [
            f"{_ELB}:ModifyLoadBalancerAttributes", f"{_ELB}:SetIpAddressType", f"{_ELB}:SetSecurityGroups",
            f"{_ELB}:SetSubnets", f"{_ELB}:DeleteLoadBalancer", f"{_ELB}:ModifyTargetGroup",
            f"{_ELB}:ModifyTargetGroupAttributes", f"{_ELB}:DeleteTargetGroup",
            f"{_ELB}:ModifyListenerAttributes", f"{_ELB}:ModifyCapacityReservation", f"{_ELB}:ModifyIpPools",
        ],
        condition=_OWN_RESOURCE,
    ),
    _allow(
        [f"{_ELB}:AddTags"],
        [
            "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
            "arn:aws:elasticloadbalancing:*:*:loadbalancer/net/*/*",
            "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*/*",
        ],
        {
            "StringEquals": {f"{_ELB}:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]},
            "Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"},
        },
    ),
    _allow(
        [f"{_ELB}:RegisterTargets", f"{_ELB}:DeregisterTargets"],
        "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
    ),
    _allow(
        [
            f"{_ELB}:SetWebAcl", f"{_ELB}:ModifyListener", f"{_ELB}:AddListenerCertificates",
            f"{_ELB}:RemoveListenerCertificates", f"{_ELB}:ModifyRule", f"{_ELB}:SetRulePriorities",
        ]
    ),
]


@dataclass(frozen=True)
class EdgeArgs:
    config: EdgeConfig
    cluster_name: pulumi.Input[str]
    region: str
    vpc_id: pulumi.Input[str]
    controller_replicas: int
    kubernetes_provider: k8s.Provider
    # The system node group and the Pod Identity agent: what its pods need to run and get AWS credentials.
    system_ready: list[pulumi.Resource]


class Edge(pulumi.ComponentResource):
    controller_role_arn: pulumi.Output[str]
    certificate_arn: pulumi.Output[str] | None
    web_acl_arn: pulumi.Output[str] | None
    # Its webhooks (failurePolicy: Fail) reject Ingresses until it runs, and its finalizer deletes the ALB on
    # destroy: every Ingress and LoadBalancer Service depends on it.
    controller: k8s.helm.v3.Release

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Edge", name, None, opts)

        controller = iam.pod_identity_role(
            f"{name}-lb-controller",
            "AWS Load Balancer Controller (EKS Pod Identity)",
            iam.document(LOAD_BALANCER_CONTROLLER_POLICY),
            args.cluster_name,
            LBC_NAMESPACE,
            LBC_SERVICE_ACCOUNT,
            self,
        )
        self.controller_role_arn = controller.role.arn

        self.controller = pinned_release(
            f"{name}-lb-controller",
            AWS_LOAD_BALANCER_CONTROLLER,
            LBC_NAMESPACE,
            {
                "clusterName": args.cluster_name,
                "region": args.region,
                "vpcId": args.vpc_id,
                "replicaCount": args.controller_replicas,
                "serviceAccount": {"create": True, "name": LBC_SERVICE_ACCOUNT},
                "enableServiceMutatorWebhook": False,
            },
            pulumi.ResourceOptions(
                parent=self, provider=args.kubernetes_provider, depends_on=[*controller.grants, *args.system_ready]
            ),
            # Two webhook-serving replicas pulled onto fresh system nodes.
            timeout_s=600,
        )

        self.certificate_arn = None
        self.web_acl_arn = None
        if args.config.domain:
            self.certificate_arn = self._certificate(name, args.config)
            self.web_acl_arn = self._web_acl(name, args.config)

        self.register_outputs(
            {
                "controller_role_arn": self.controller_role_arn,
                "certificate_arn": self.certificate_arn,
                "web_acl_arn": self.web_acl_arn,
            }
        )

    def _certificate(self, name: str, config: EdgeConfig) -> pulumi.Output[str]:
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=config.domain,
            validation_method="DNS",
            opts=pulumi.ResourceOptions(parent=self),
        )
        if not config.hosted_zone_id:
            # Validation records go to a DNS zone we do not manage; the ARN is usable once they exist.
            return certificate.arn
        certificate_child = pulumi.ResourceOptions(parent=certificate)
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-certificate-validation",
            zone_id=config.hosted_zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=300,
            allow_overwrite=True,
            opts=certificate_child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=certificate_child,
        )
        return validation.certificate_arn

    def _web_acl(self, name: str, config: EdgeConfig) -> pulumi.Output[str]:
        metric = f"{name}-rate-limit"
        acl = aws.wafv2.WebAcl(
            f"{name}-waf",
            scope="REGIONAL",
            description="Per-client-IP rate limit in front of the gateway ALB",
            default_action={"allow": {}},
            rules=[
                {
                    "name": "rate-limit-per-ip",
                    "priority": 0,
                    "action": {"block": {}},
                    "statement": {
                        "rate_based_statement": {
                            "limit": config.waf_rate_limit_per_5min,
                            "aggregate_key_type": "IP",
                            "evaluation_window_sec": 300,
                        }
                    },
                    "visibility_config": {
                        "cloudwatch_metrics_enabled": True,
                        "metric_name": metric,
                        "sampled_requests_enabled": True,
                    },
                }
            ],
            visibility_config={
                "cloudwatch_metrics_enabled": True,
                "metric_name": f"{name}-waf",
                "sampled_requests_enabled": True,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        return acl.arn
