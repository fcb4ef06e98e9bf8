"""`refresh-prices` against botocore's Stubber: Price List responses shaped like the real API (PriceList is a list
of JSON strings, terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD) and Spot price history."""

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from components.pricing import load_catalog
from infra.cost.refresh import build_region


def price_item(sku: str, instance_type: str, usd: str) -> str:
    """One Price List product as the API returns it: a JSON document in a string."""
    offer, rate = f"{sku}.JRTCKXETXF", f"{sku}.JRTCKXETXF.6YS6EN2CT7"
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "sku": sku,
                    "attributes": {"instanceType": instance_type, "regionCode": "us-west-2",
                                   "operatingSystem": "Linux", "tenancy": "Shared"}},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {offer: {
            "offerTermCode": "JRTCKXETXF", "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z",
            "termAttributes": {},
            "priceDimensions": {rate: {"rateCode": rate, "unit": "Hrs", "beginRange": "0", "endRange": "Inf",
                                       "description": f"$ per On Demand Linux {instance_type} Instance Hour",
                                       "appliesTo": [], "pricePerUnit": {"USD": usd}}},
        }}},
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z",
    })


@pytest.fixture
def clients() -> Any:
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    ec2 = boto3.client("ec2", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(pricing) as pricing_stub, Stubber(ec2) as ec2_stub:
        yield pricing, pricing_stub, ec2, ec2_stub


def test_refresh_takes_on_demand_from_the_price_list_and_spot_as_the_zone_median(clients: Any) -> None:
    pricing, pricing_stub, ec2, ec2_stub = clients
    catalog = load_catalog("us-west-2")
    for name in catalog.instances:
        found = [price_item("SKUG62X", name, "0.9800000000")] if name == "g6.2xlarge" else []
        # Attribute names of the AmazonEC2 price list: Linux, shared tenancy, no pre-installed software, used
        # capacity (not reservations), one region.
        filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in (
            ("instanceType", name), ("regionCode", "us-west-2"), ("operatingSystem", "Linux"),
            ("tenancy", "Shared"), ("preInstalledSw", "NA"), ("capacitystatus", "Used"))]
        pricing_stub.add_response(
            "get_products", {"FormatVersion": "aws_v1", "PriceList": found},
            {"ServiceCode": "AmazonEC2", "Filters": filters, "FormatVersion": "aws_v1", "MaxResults": 100},
        )
    ec2_stub.add_response("describe_spot_price_history", {"SpotPriceHistory": [
        {"AvailabilityZone": "us-west-2a", "InstanceType": "g6.2xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.400000"},
        {"AvailabilityZone": "us-west-2b", "InstanceType": "g6.2xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.500000"},
        {"AvailabilityZone": "us-west-2c", "InstanceType": "g6.2xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.600000"},
        {"AvailabilityZone": "us-west-2a", "InstanceType": "g6.2xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.900000"},  # older price of a zone already seen: ignored
    ], "NextToken": ""}, {"InstanceTypes": ANY, "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY,
                          "MaxResults": 1000})
    for _ in [k for k in catalog.prices if k.startswith("elasticache.")]:
        pricing_stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []}, {
            "ServiceCode": "AmazonElastiCache", "Filters": ANY, "FormatVersion": "aws_v1", "MaxResults": 100})

    document = build_region("us-west-2", pricing, ec2, "2026-12-01")

    pricing_stub.assert_no_pending_responses()
    on_demand = document["prices"]["ec2.g6.2xlarge.on-demand"]
    assert (on_demand["price"], on_demand["date"]) == (0.98, "2026-12-01")
    assert on_demand["source"] == "AWS Price List API, AmazonEC2 SKU SKUG62X" and "estimate" not in on_demand
    spot = document["prices"]["ec2.g6.2xlarge.spot"]
    assert spot["price"] == 0.5 and "median of 3 zones" in spot["source"]
    # Types the API did not answer for keep their previous entry and its source.
    assert document["prices"]["ec2.g5.2xlarge.on-demand"]["price"] == catalog.rate("ec2.g5.2xlarge.on-demand")
