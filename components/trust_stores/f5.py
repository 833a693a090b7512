"""An F5 BIG-IP that trusts the appliance root CA and verifies every node it sends traffic to.

What is declared for one load balancer in front of one cluster (all with `pulumi_f5bigip`):

- an explicit `f5bigip.Provider` for that BIG-IP, management-API certificate checked;
- the appliance root CA bundle as a certificate object with a content-addressed name;
- the name check ("Authenticate Name") in a small parent server-SSL profile created with tmsh,
  because the Pulumi/Terraform profile resource cannot set it;
- the server-SSL profile the virtual server uses towards the nodes: CA = that object,
  certificate required, untrusted or expired certificate = drop, SNI = the service FQDN;
- optionally the virtual server in front of the cluster, with its monitor, pool and profiles:
  with a client-SSL profile (ssl_termination: load_balancer) it terminates SSL and re-encrypts
  to the verified nodes; without one (passthrough) it forwards TCP only and never touches TLS
  or HTTP. The health monitor verifies the nodes with the server-SSL profile in both modes.

`declare_trust` is the `trust_stores` entry point for `kind: f5`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_f5bigip as f5bigip
from pulumi_f5bigip import ltm, ssl

from components.trust_stores import ClusterTrust, TrustStoreOutputs

__all__ = ["ca_object_name", "check", "declare_trust"]

_CONFIGURATOR_PORT = 8443
# The appliance serves its certificate straight from its root CA: leaf + root. One more
# level leaves room for an intermediate, and nothing deeper is accepted.
_AUTHENTICATE_DEPTH = 2
_HEARTBEAT_PATH = "/SAAS/API/1.0/REST/system/health/heartbeat"
# Words that end up inside a tmsh command line, which the provider runs through bash as
# `tmsh <command>` in single quotes: only characters that need no quoting anywhere.
_TMSH_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def ca_object_name(cluster: str, sha256s: Sequence[str]) -> str:
    """The BIG-IP name of the certificate object holding exactly these root CAs.

    `ws1-<cluster>-rootca-<16 hex>`, the hex being the start of a SHA-256 over the sorted,
    normalised fingerprints: the same roots give the same name whatever their order or
    notation, and a rotation gives a new name. A new name makes Pulumi create the new object,
    repoint the profile to it, and only then delete the old one (create-before-delete), so
    the profile never points at a missing or half-replaced CA.
    """
    normalised = sorted({sha256.replace(":", "").strip().lower() for sha256 in sha256s})
    if not normalised:
        raise ValueError(
            f"cluster {cluster}: no root CA fingerprint to trust; expected at least one."
        )
    digest = hashlib.sha256("\n".join(normalised).encode()).hexdigest()
    return f"ws1-{cluster}-rootca-{digest[:16]}"


def declare_trust(
    load_balancer: Any, trust: ClusterTrust, parent: pulumi.Resource
) -> TrustStoreOutputs:
    """Declare the BIG-IP objects through which `load_balancer` trusts and verifies the nodes."""
    lb = load_balancer
    partition = lb.partition
    prefix = f"{lb.name}-{trust.cluster}"
    provider = _provider(lb, parent)
    on_device = pulumi.ResourceOptions(parent=parent, provider=provider)

    sha256s = pulumi.Output.from_input(trust.root_ca_sha256s)
    certificate = ssl.Certificate(
        f"{prefix}-appliance-root-ca",
        # The partition stays out of `name`: a "/Common/" inside it breaks the upload.
        name=sha256s.apply(lambda found: ca_object_name(trust.cluster, found)),
        content=trust.root_ca_bundle_pem,
        partition=partition,
        opts=on_device,
    )
    verify_parent, name_check = _name_check(lb, trust, prefix, on_device)

    profile_path = _full_path(partition, lb.server_ssl_profile)
    profile = ltm.ProfileServerSsl(
        f"{prefix}-server-ssl",
        name=profile_path,
        defaults_from=verify_parent,
        # Built from the certificate's output so the profile waits for (and, in a rotation,
        # is repointed after) the new CA object.
        ca_file=certificate.name.apply(lambda name: _full_path(partition, name)),
        peer_cert_mode="require",
        authenticate="always",
        authenticate_depth=_AUTHENTICATE_DEPTH,
        untrusted_cert_response_control="drop",
        expire_cert_response_control="drop",
        # SNI only: the node picks its certificate by it. The name CHECK is the parent's
        # authenticate-name, inherited through defaults_from.
        server_name=trust.service_fqdn,
        # The resource defaults to /Common/default.crt and .key, which would present the
        # BIG-IP's self-signed certificate to the nodes as a client certificate. "none" is
        # tmsh's value for no client certificate.
        cert="none",
        key="none",
        opts=pulumi.ResourceOptions.merge(on_device, pulumi.ResourceOptions(depends_on=name_check)),
    )

    if lb.virtual_server is not None:
        _virtual_server(lb, trust, prefix, profile, on_device)

    return TrustStoreOutputs(
        # From the trust's input fingerprints, which preview knows (the profile and the
        # object's name are inputs too), tied to the profile so exports wait for it.
        trusted_sha256s=pulumi.Output.all(profile.name, sha256s).apply(
            lambda values: [str(sha256) for sha256 in values[1]]
        ),
        object_names=pulumi.Output.all(certificate.name, profile.name).apply(
            lambda names: [_full_path(partition, names[0]), names[1]]
        ),
    )


def _provider(lb: Any, parent: pulumi.Resource) -> f5bigip.Provider:
    """One explicit provider per BIG-IP, so that no ambient `f5bigip:*` config is used."""
    options: dict[str, Any] = {}
    # Read by key name with get_secret, so the value is an Output marked secret from the
    # start and is stored encrypted in state. When the stack does not set the key, the
    # password is left out and the provider falls back to the BIGIP_PASSWORD environment
    # variable (settings.password_keys_not_set lists those keys for the program to check).
    password = pulumi.Config().get_secret(lb.password_key)
    if password is not None:
        options["password"] = password
    if lb.validate_management_certificate:
        # The provider's default is NOT to verify (validate_certs_disable defaults to true).
        options["validate_certs_disable"] = False
        options["trusted_cert_path"] = str(lb.management_ca_path)
    else:
        options["validate_certs_disable"] = True
    provider = f5bigip.Provider(
        f"{lb.name}-bigip",
        # A host name or IP: the provider adds https:// and appends `port` itself.
        address=lb.address,
        port=str(lb.port),  # a string in this provider's schema
        username=lb.username,
        # Otherwise every operation posts telemetry to F5.
        teem_disable=True,
        opts=pulumi.ResourceOptions(parent=parent),
        **options,
    )
    if not lb.validate_management_certificate:
        pulumi.log.warn(
            f"The management API certificate of load balancer {lb.name} ({lb.address}) is "
            "NOT verified: whoever answers at that address receives the BIG-IP password and "
            "can change what it trusts. Set validate_management_certificate: true and "
            "management_ca_path to the CA that signs its management certificate.",
            resource=provider,
        )
    return provider


def _name_check(
    lb: Any, trust: ClusterTrust, prefix: str, on_device: pulumi.ResourceOptions
) -> tuple[str, list[pulumi.Resource]]:
    """The parent profile that carries authenticate-name; returns its path and its resources.

    pulumi_f5bigip's ProfileServerSsl has no authenticate-name argument
    (terraform-provider-bigip issue 1168), so the check lives in a parent profile created with
    tmsh through `f5bigip.Command`, and the managed profile inherits it via defaults_from.

    What Command cannot do, and how this copes:
    - It is never read back: refresh does not see a parent changed or deleted on the device.
      Deleting it is still caught on the next change of the managed profile (its
      defaults_from no longer resolves); changing it is not caught at all.
    - It runs its commands on create and again when they change, and it reports failure only
      for an HTTP error: tmsh's own error text can come back as a result. So the commands
      must be safe to run twice and must never need to modify an existing object.
    Hence the parent is content-addressed: its name contains the name it checks, so a new
    service FQDN means a new parent (created), a repointed defaults_from (updated), and the
    old parent deleted last by the cleanup command's replacement. Running `create` for a
    parent that already exists cannot leave a wrong name check, because the same name means
    the same content. `replace_on_changes` makes each change a replacement; replacement
    keeps Pulumi's create-before-delete order (no delete_before_replace).
    """
    partition = lb.partition
    parent_path = f"/{partition}/ws1-{trust.cluster}-verify-{trust.service_fqdn}"
    by_replacement = pulumi.ResourceOptions.merge(
        on_device, pulumi.ResourceOptions(replace_on_changes=["commands"])
    )
    create = f5bigip.Command(
        f"{prefix}-verify-name",
        commands=[
            f"create ltm profile server-ssl {parent_path} defaults-from /Common/serverssl "
            f"authenticate-name {trust.service_fqdn}"
        ],
        when="apply",
        opts=by_replacement,
    )
    # Runs only when this resource is deleted: on destroy (after the managed profile, which
    # depends on it) and when a new FQDN replaces it (after the profile was repointed).
    cleanup = f5bigip.Command(
        f"{prefix}-verify-name-cleanup",
        commands=[f"delete ltm profile server-ssl {parent_path}"],
        when="destroy",
        opts=by_replacement,
    )
    return parent_path, [create, cleanup]


def _virtual_server(
    lb: Any,
    trust: ClusterTrust,
    prefix: str,
    profile: ltm.ProfileServerSsl,
    on_device: pulumi.ResourceOptions,
) -> None:
    """The virtual server users reach the cluster through.

    With a client-SSL profile (ssl_termination: load_balancer; settings requires one exactly
    then) the BIG-IP terminates SSL, adds X-Forwarded-For, keeps users on a node with a cookie
    and re-encrypts to the nodes, verifying them with the server-SSL profile. Without one
    (passthrough) the nodes' TLS goes through untouched: a TCP profile only, persistence by
    source address (a cookie needs HTTP), and no server-SSL profile (it would wrap the
    client's TLS in a second one). The monitor is the BIG-IP's own connection to each node,
    so it verifies the node with the server-SSL profile in both modes.
    """
    vs = lb.virtual_server
    passthrough = vs.client_ssl_profile is None
    partition = lb.partition
    base = f"/{partition}/ws1-{trust.cluster}"

    monitor = ltm.Monitor(
        f"{prefix}-heartbeat",
        name=f"{base}-heartbeat",
        parent="/Common/https",
        send=(
            f"GET {_HEARTBEAT_PATH} HTTP/1.1\r\nHost: {trust.service_fqdn}\r\n"
            "Connection: close\r\n\r\n"
        ),
        receive="ok",
        # The health check verifies the node exactly as the traffic does.
        ssl_profile=profile.name,
        opts=on_device,
    )
    pool = ltm.Pool(
        f"{prefix}-pool",
        name=f"{base}-pool",
        monitors=[monitor.name],
        opts=on_device,
    )
    for node in trust.nodes:
        member = ltm.Node(
            f"{prefix}-node-{node.fqdn}",
            name=f"/{partition}/{node.fqdn}",
            address=node.address,
            opts=on_device,
        )
        ltm.PoolAttachment(
            f"{prefix}-member-{node.fqdn}",
            pool=pool.name,
            node=pulumi.Output.concat(member.name, f":{node.service_port}"),
            opts=on_device,
        )
    tcp = ltm.ProfileTcp(
        f"{prefix}-tcp",
        name=f"{base}-tcp",
        defaults_from="/Common/tcp",
        # Long-lived connections (admin console, device sync) outlast the 300 s default.
        idle_timeout=3600,
        opts=on_device,
    )
    # Passthrough: the BIG-IP must touch neither TLS nor HTTP, so TCP only, and the client
    # address is all there is to keep a user on one node.
    persistence: ltm.PersistenceProfileSrcAddr | ltm.PersistenceProfileCookie
    tls_profiles: dict[str, Any] = {}
    if passthrough:
        persistence = ltm.PersistenceProfileSrcAddr(
            f"{prefix}-source-address",
            name=f"{base}-source-address",
            defaults_from="/Common/source_addr",
            opts=on_device,
        )
        profiles = [tcp.name]
    else:
        persistence = ltm.PersistenceProfileCookie(
            f"{prefix}-cookie",
            name=f"{base}-cookie",
            defaults_from="/Common/cookie",
            opts=on_device,
        )
        http = ltm.ProfileHttp(
            f"{prefix}-http",
            name=f"{base}-http",
            defaults_from="/Common/http",
            # The appliance logs and applies network rules by the client address.
            insert_xforwarded_for="enabled",
            opts=on_device,
        )
        profiles = [http.name, tcp.name]
        tls_profiles = {
            "client_profiles": [vs.client_ssl_profile],
            "server_profiles": [profile.name],
        }
    ltm.VirtualServer(
        f"{prefix}-virtual-server",
        name=f"{base}-vs",
        destination=vs.destination,
        port=vs.port,
        pool=pool.name,
        persistence_profiles=[persistence.name],
        profiles=profiles,
        opts=on_device,
        **tls_profiles,
    )


def check(lb: Any, cluster: Any) -> list[str]:
    """Everything this module refuses for `lb` in front of `cluster` (settings.Cluster),
    asked before the first resource of the stack is declared."""
    problems = []
    vs = lb.virtual_server
    if vs is not None and vs.port == _CONFIGURATOR_PORT:
        problems.append(
            f"load balancer {lb.name}: the virtual server must not use 8443, the appliance "
            "configurator port; expected the service port, e.g. 443."
        )
    for node in cluster.nodes if vs is not None else ():
        if node.service_port in (_CONFIGURATOR_PORT, node.configurator_port):
            problems.append(
                f"load balancer {lb.name}: pool member {node.fqdn} must not use "
                f"{node.service_port}, the appliance configurator port; expected the "
                "service port, e.g. 443."
            )
    for what, word in (
        ("partition", lb.partition),
        ("cluster name", cluster.name),
        ("service FQDN", cluster.service_fqdn),
    ):
        if not _TMSH_WORD.fullmatch(word):
            problems.append(
                f"load balancer {lb.name}: the {what} {word!r} cannot be used in a BIG-IP "
                "object name; expected letters, digits, '.', '_' and '-'."
            )
    if lb.validate_management_certificate and lb.management_ca_path is None:
        problems.append(
            f"load balancer {lb.name}: validate_management_certificate is true but "
            "management_ca_path is not set; expected the PEM file of the CA that signs "
            "the BIG-IP management API certificate."
        )
    return problems


def _full_path(partition: str, name: str) -> str:
    """BIG-IP full path: bare names get the partition (a bare name diffs forever, #679)."""
    return name if name.startswith("/") else f"/{partition}/{name}"
