"""Workspace ONE Access <-> load balancer SSL trust: one AccessTrust per cluster of this stack."""

import pulumi

from components.access_trust import AccessTrust, observe_and_approve
from components.preflight import (
    check_credentials,
    check_load_balancers,
    probe_configurators,
    warn_about_environment,
)
from components.settings import SettingsError, load_settings

try:
    settings = load_settings()
except SettingsError as problem:
    raise pulumi.RunError(str(problem)) from None

# Every load balancer is checked, every cluster observed and approved, and every credential
# the plan needs found, before anything is declared: a refusal registers nothing.
check_load_balancers(settings)
warn_about_environment()
approved = observe_and_approve(settings.clusters)
check_credentials(settings, approved)
probe_configurators(settings, approved)

for cluster in settings.clusters:
    trust = AccessTrust(
        cluster,
        settings.load_balancers_for(cluster.name),
        approved[cluster.name],
        expiry_warning_days=settings.expiry_warning_days,
    )
    pulumi.export(cluster.name, trust.exports)
