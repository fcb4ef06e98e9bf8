"""Rebuild a region's price file from AWS: EC2 on-demand and ElastiCache node prices from the Price List API
(`pricing.get_products`, an endpoint served in us-east-1 for all regions; each PriceList item is a JSON string),
EC2 Spot prices from `ec2.describe_spot_price_history` (the median of the zones' current prices). Other entries
(NAT, ALB, logs ...) are kept as they are, with their sources."""

import datetime
import json
import statistics
from pathlib import Path
from typing import Any

from components.pricing import PRICES_DIR, load_catalog

PRICING_REGION = "us-east-1"
LINUX_SHARED = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}


def _filters(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in values.items()]


def on_demand_usd(pricing: Any, service: str, filters: dict[str, str]) -> tuple[float, str] | None:
    """The hourly on-demand USD price of the one product matching `filters`, and its SKU; None if none."""
    response = pricing.get_products(ServiceCode=service, Filters=_filters(filters), FormatVersion="aws_v1",
                                    MaxResults=100)
    for item in response.get("PriceList", []):
        product = json.loads(item) if isinstance(item, str) else item
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term["priceDimensions"].values():
                usd = float(dimension["pricePerUnit"]["USD"])
                if dimension.get("unit") == "Hrs" and usd > 0:
                    return usd, product["product"]["sku"]
    return None


def spot_usd(ec2: Any, instance_types: list[str]) -> dict[str, tuple[float, int]]:
    """Median current Spot price per type over the region's zones, with the number of zones."""
    by_type: dict[str, dict[str, float]] = {}
    token = ""
    while True:
        arguments: dict[str, Any] = {
            "InstanceTypes": instance_types, "ProductDescriptions": ["Linux/UNIX"],
            "StartTime": datetime.datetime.now(datetime.UTC), "MaxResults": 1000,
        }
        if token:
            arguments["NextToken"] = token
        response = ec2.describe_spot_price_history(**arguments)
        for entry in response.get("SpotPriceHistory", []):
            # Newest first per zone: keep the first price seen for each zone.
            zones = by_type.setdefault(entry["InstanceType"], {})
            zones.setdefault(entry["AvailabilityZone"], float(entry["SpotPrice"]))
        token = response.get("NextToken") or ""
        if not token:
            break
    return {t: (statistics.median(zones.values()), len(zones)) for t, zones in by_type.items()}


def build_region(region: str, pricing: Any, ec2: Any, today: str) -> dict[str, Any]:
    """The region's price document: refreshed EC2, Spot and ElastiCache entries over the current file's."""
    catalog = load_catalog(region)
    prices = {key: _as_entry(price) for key, price in catalog.prices.items()}
    for name in catalog.instances:
        found = on_demand_usd(pricing, "AmazonEC2", {"instanceType": name, "regionCode": region, **LINUX_SHARED})
        if found:
            source = f"AWS Price List API, AmazonEC2 SKU {found[1]}"
            prices[f"ec2.{name}.on-demand"] = _entry(found[0], "USD/hour", today, source)
    for name, (usd, zones) in spot_usd(ec2, sorted(catalog.instances)).items():
        source = f"EC2 DescribeSpotPriceHistory, Linux/UNIX, median of {zones} zones"
        prices[f"ec2.{name}.spot"] = _entry(usd, "USD/hour", today, source)
    for key in [k for k in prices if k.startswith("elasticache.")]:
        node = key.removeprefix("elasticache.")
        found = on_demand_usd(pricing, "AmazonElastiCache", {"instanceType": node, "regionCode": region,
                                                               "cacheEngine": "Redis"})
        if found:
            prices[key] = _entry(found[0], "USD/hour", today, f"AWS Price List API, AmazonElastiCache SKU {found[1]}")
    return {"region": region, "currency": "USD", "built": today, "builtBy": "llm-platform refresh-prices",
            "prices": prices}


def _entry(price: float, unit: str, date: str, source: str) -> dict[str, Any]:
    return {"price": price, "unit": unit, "date": date, "source": source}


def _as_entry(price: Any) -> dict[str, Any]:
    entry = _entry(price.price, price.unit, price.date, price.source)
    if price.estimate:
        entry["estimate"] = price.estimate
    return entry


def refresh_files(regions: list[str], prices_dir: Path = PRICES_DIR) -> list[Path]:
    import boto3

    pricing = boto3.client("pricing", region_name=PRICING_REGION)
    today = datetime.date.today().isoformat()
    written = []
    for region in regions:
        document = build_region(region, pricing, boto3.client("ec2", region_name=region), today)
        path = prices_dir / f"{region}.json"
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        written.append(path)
    load_catalog.cache_clear()
    return written
