"""Workspace ONE Access <-> load balancer SSL trust: one AccessTrust per cluster of this stack."""

import pulumi

from components.access_trust import AccessTrust, observe_and_approve
from components.preflight import check_credentials, warn_about_environment
from components.settings import SettingsError, load_settings

try:
    settings = load_settings()
except SettingsError as problem:
    raise pulumi.RunError(str(problem)) from None

# Every cluster is observed and approved, and every credential the plan needs is found,
# before anything is declared: a refusal leaves every load balancer as it was.
warn_about_environment()
approved = observe_and_approve(settings.clusters)
check_credentials(settings, approved)

for cluster in settings.clusters:
    try:
        trust = AccessTrust(
            cluster,
            settings.load_balancers_for(cluster.name),
            approved[cluster.name],
            expiry_warning_days=settings.expiry_warning_days,
        )
    except ValueError as problem:  # a load balancer the settings let through but cannot serve
        raise pulumi.RunError(f"cluster {cluster.name}: {problem}") from None
    pulumi.export(cluster.name, trust.exports)
