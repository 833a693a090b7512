"""An F5 BIG-IP that trusts the appliance root CA and verifies every node it sends traffic to.

What is declared for one load balancer entry in front of one cluster:

- an explicit `f5bigip.Provider` for that BIG-IP, management-API certificate checked;
- the appliance root CA bundle as a certificate object with a content-addressed name;
- the server-SSL profile the virtual server uses towards the nodes: CA = that object,
  certificate required, untrusted or expired certificate = drop, SNI = the service FQDN;
- the name check (Authenticate Name) on that same profile, set and verified over iControl
  REST by `f5_name_check.ServerSslNameCheck`, because the Pulumi/Terraform profile resource
  cannot set it;
- optionally the virtual server in front of the cluster, with its monitor, pool, nodes and
  profiles: with a client-SSL profile (ssl_termination: load_balancer) it terminates SSL and
  re-encrypts to the verified nodes; without one (passthrough) it forwards TCP only;
- with `device_group`: a read-only check of the group and of the unit before anything
  changes, and a config-sync after (`f5_device_group`).

Names on the device come from the cluster's service FQDN (never from the entry's or the
cluster's label), so renaming a stack entry renames nothing on the BIG-IP; Pulumi's logical
names come from ONE place (`_logical_names`; the provider's from `_provider_logical_names`),
where aliases for renamed entries (previous_name) attach.
Provider behaviour relied on is from terraform-provider-bigip v1.26.0, the version
pulumi-f5bigip 3.25.1 bridges (shared/reference/f5-bigip.md, "What the provider source does
with each argument").

`declare_trust` is the `trust_stores` entry point for `kind: f5`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_f5bigip as f5bigip
from pulumi_f5bigip import ltm, ssl

from components.appliance.client import HEARTBEAT_PATH
from components.naming import Names
from components.trust_stores import ClusterTrust, TrustStoreOutputs
from components.trust_stores.bigip_rest import Management
from components.trust_stores.f5_device_group import DeviceGroupCheck, DeviceGroupSync
from components.trust_stores.f5_name_check import ServerSslNameCheck

__all__ = [
    "HEARTBEAT_RECEIVE",
    "HEARTBEAT_SEND",
    "ca_object_name",
    "check",
    "declare_trust",
    "node_object_name",
]

_CONFIGURATOR_PORT = 8443
# The appliance serves its certificate straight from its root CA: leaf + root. One more
# level leaves room for an intermediate, and nothing deeper is accepted.
_AUTHENTICATE_DEPTH = 2
# HTTP/1.0, so that the answer is never chunked (a chunked "ok" would not end the response).
HEARTBEAT_SEND = "GET " + HEARTBEAT_PATH + " HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
# The heartbeat answers 200 with the body "ok" (shared/reference/workspace-one-access.md). A
# receive string is a regular expression searched in the whole response, headers included
# (F5 K5917: POSIX extended regular expressions), so a bare "ok" also matches "token",
# "Cookie" or "Broken". Anchored instead: the status line must say 200, and the response must
# end in "ok" right after a control character (the line feed of the blank line that ends the
# headers). `[^ -~]` is a plain ERE bracket range, chosen because whether the monitor engine
# accepts escapes such as \r or \n in a receive string is not shown by any public source.
HEARTBEAT_RECEIVE = r"^HTTP/1\.[01] 200 .*[^ -~]ok$"
# Words that end up in BIG-IP object names: only characters that need no quoting anywhere.
_OBJECT_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def ca_object_name(service_fqdn: str, sha256s: Sequence[str]) -> str:
    """The BIG-IP name of the certificate object holding exactly these root CAs.

    `ws1-<service FQDN>-rootca-<16 hex>`, the hex being the start of a SHA-256 over the
    sorted, normalised fingerprints: the same roots give the same name whatever their order
    or notation, and a rotation gives a new name. A new name makes Pulumi create the new
    object, repoint the profile to it, and only then delete the old one (create-before-
    delete), so the profile never points at a missing or half-replaced CA.
    """
    normalised = sorted({sha256.replace(":", "").strip().lower() for sha256 in sha256s})
    if not normalised:
        raise ValueError(
            f"cluster {service_fqdn}: no root CA fingerprint to trust; expected at least one."
        )
    digest = hashlib.sha256("\n".join(normalised).encode()).hexdigest()
    return f"ws1-{service_fqdn}-rootca-{digest[:16]}"


def node_object_name(partition: str, address: str) -> str:
    """`/<partition>/ws1-node-<address>`: a new address is a new node, never the old one reused.

    The provider's Create adopts an existing node of the same name and keeps ITS address,
    and `address` forces a replacement, so a name fixed per node would be stuck on the old
    address. Named by the address, a changed address is a new node and pool member, created
    first; the old member and then the old node are deleted after. The node's FQDN goes into
    its description (changing it is an in-place update). BIG-IP also refuses a second node
    with an address that a node of another name already has, so an operator's node for the
    same address is never silently taken over: the create fails, naming it.
    """
    return f"/{partition}/ws1-node-{_address_word(address)}"


def _address_word(address: str) -> str:
    """An address as part of a name: IPv6 colons would clash with BIG-IP's name:port and
    with Pulumi's URN separator."""
    return address.replace(":", ".")


def _logical_names(lb: Any, trust: ClusterTrust) -> Names:
    """The one place Pulumi logical names of an entry's resources start from; with the old
    names as aliases when the entry or its cluster was renamed (previous_name)."""
    return Names(
        f"{lb.name}-{trust.cluster}",
        f"{lb.previous_name or lb.name}-{trust.previous_cluster or trust.cluster}",
    )


def _provider_logical_names(lb: Any) -> Names:
    """The entry's `f5bigip` provider (one per BIG-IP entry): `<entry>-bigip`."""
    return Names(lb.name, lb.previous_name)


def declare_trust(
    load_balancer: Any, trust: ClusterTrust, parent: pulumi.Resource
) -> TrustStoreOutputs:
    """Declare the BIG-IP objects through which `load_balancer` trusts and verifies the nodes."""
    lb = load_balancer
    management = _management(lb)
    provider = _provider(lb, parent)

    plan = _Plan(_logical_names(lb, trust))
    partition = lb.partition
    sha256s = pulumi.Output.from_input(trust.root_ca_sha256s)
    ca_name = sha256s.apply(lambda found: ca_object_name(trust.service_fqdn, found))
    ca_path = ca_name.apply(lambda name: f"/{partition}/{name}")
    profile_path = _full_path(partition, lb.server_ssl_profile)
    plan.device(
        ssl.Certificate,
        "appliance-root-ca",
        # The partition stays out of `name`: a "/Common/" inside it breaks the upload.
        {"name": ca_name, "content": trust.root_ca_bundle_pem, "partition": partition},
        # `partition` is updated in place by the provider, which then PATCHes a path that
        # does not exist: moving the object must be a replacement.
        replace_on_changes=["partition"],
    )
    plan.device(
        ltm.ProfileServerSsl,
        "server-ssl",
        {
            "name": profile_path,
            "defaults_from": "/Common/serverssl",
            "ca_file": ca_path,
            "peer_cert_mode": "require",
            "authenticate": "always",
            "authenticate_depth": _AUTHENTICATE_DEPTH,
            "untrusted_cert_response_control": "drop",
            "expire_cert_response_control": "drop",
            # SNI only: the node picks its certificate by it. The name CHECK is the
            # authenticate-name that the name-check resource sets on this profile.
            "server_name": trust.service_fqdn,
            # The resource defaults to /Common/default.crt and .key, which would present the
            # BIG-IP's self-signed certificate to the nodes as a client certificate. "none"
            # is tmsh's value for no client certificate.
            "cert": "none",
            "key": "none",
        },
        after=["appliance-root-ca"],
    )
    plan.rest(
        functools.partial(ServerSslNameCheck, management=management),
        "authenticate-name",
        {"profile": profile_path, "authenticate_name": trust.service_fqdn},
        after=["server-ssl"],
    )
    if lb.virtual_server is not None:
        _plan_virtual_server(plan, lb, trust, profile_path)

    check: pulumi.Resource | None = None
    revision = plan.revision()
    if lb.device_group is not None:
        check = DeviceGroupCheck(
            plan.names("device-group-check"),
            management=management,
            device_group=lb.device_group,
            revision=revision,
            opts=plan.names.options("device-group-check", pulumi.ResourceOptions(parent=parent)),
        )
    declared = plan.declare(parent, provider, check)
    written: list[pulumi.Resource] = [declared["server-ssl"], declared["authenticate-name"]]
    if lb.device_group is not None:
        sync = DeviceGroupSync(
            plan.names("device-group-sync"),
            management=management,
            device_group=lb.device_group,
            revision=revision,
            opts=plan.names.options(
                "device-group-sync",
                pulumi.ResourceOptions(parent=parent, depends_on=list(declared.values())),
            ),
        )
        written.append(sync)

    # From the trust's input fingerprints, which preview knows (the profile and the object's
    # name are inputs too), tied to the profile, its name check and, with a device group, the
    # sync, so exports wait for all of them. The node certificates wait for `written`: they
    # must not move to a root CA before every unit of the group trusts it and checks names.
    trusted_sha256s = pulumi.Output.all(*(resource.urn for resource in written), sha256s).apply(
        lambda values: [str(sha256) for sha256 in values[-1]]
    )
    profile = declared["server-ssl"]
    return TrustStoreOutputs(
        trusted_sha256s=trusted_sha256s,
        object_names=pulumi.Output.all(ca_path, profile.urn).apply(
            lambda values: [values[0], profile_path]
        ),
        written=written,
    )


def _plan_virtual_server(plan: _Plan, lb: Any, trust: ClusterTrust, profile_path: str) -> None:
    """The virtual server users reach the cluster through, and what it needs.

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
    base = f"/{partition}/ws1-{trust.service_fqdn}"

    plan.device(
        ltm.Monitor,
        "heartbeat",
        {
            "name": f"{base}-heartbeat",
            "parent": "/Common/https",
            "send": HEARTBEAT_SEND.format(host=trust.service_fqdn),
            "receive": HEARTBEAT_RECEIVE,
            # The health check verifies the node exactly as the traffic does.
            "ssl_profile": profile_path,
        },
        after=["server-ssl", "authenticate-name"],
    )
    plan.device(
        ltm.Pool,
        "pool",
        {"name": f"{base}-pool", "monitors": [f"{base}-heartbeat"]},
        after=["heartbeat"],
    )
    # One BIG-IP node per address (BIG-IP refuses two nodes with one address) and one pool
    # member per address and port: appliances that share an address (as on a test host)
    # are members of one node.
    fqdns_at: dict[str, list[str]] = {}
    for node in trust.nodes:
        fqdns_at.setdefault(node.address, []).append(node.fqdn)
    for address, fqdns in fqdns_at.items():
        plan.device(
            ltm.Node,
            f"node-{_address_word(address)}",
            {
                "name": node_object_name(partition, address),
                "address": address,
                "description": " ".join(fqdns),
                # The provider's default is /Common/icmp, which marks every member down where
                # ICMP is blocked; health comes from the pool's heartbeat monitor
                # (terraform-provider-bigip issue 529: "none" is accepted).
                "monitor": "none",
            },
        )
    members = []
    for node in trust.nodes:
        member = f"member-{_address_word(node.address)}-{node.service_port}"
        plan.device(
            ltm.PoolAttachment,
            member,
            {
                "pool": f"{base}-pool",
                "node": f"{node_object_name(partition, node.address)}:{node.service_port}",
            },
            after=["pool", f"node-{_address_word(node.address)}"],
        )
        members.append(member)
    plan.device(
        ltm.ProfileTcp,
        "tcp",
        {
            "name": f"{base}-tcp",
            "defaults_from": "/Common/tcp",
            # Long-lived connections (admin console, device sync) outlast the 300 s default.
            "idle_timeout": 3600,
        },
    )
    # The provider updates a persistence profile's `name` in place (and a failed update
    # deletes the profile): a new name must be a new profile.
    by_name = ["name"]
    tls_profiles: dict[str, Any] = {}
    if passthrough:
        # The BIG-IP must touch neither TLS nor HTTP: TCP only, and the client address is
        # all there is to keep a user on one node.
        persistence = "source-address"
        plan.device(
            ltm.PersistenceProfileSrcAddr,
            persistence,
            {"name": f"{base}-source-address", "defaults_from": "/Common/source_addr"},
            replace_on_changes=by_name,
        )
        profiles = [f"{base}-tcp"]
        needs = ["tcp"]
    else:
        persistence = "cookie"
        plan.device(
            ltm.PersistenceProfileCookie,
            persistence,
            {"name": f"{base}-cookie", "defaults_from": "/Common/cookie"},
            replace_on_changes=by_name,
        )
        plan.device(
            ltm.ProfileHttp,
            "http",
            {
                "name": f"{base}-http",
                "defaults_from": "/Common/http",
                # The appliance logs and applies network rules by the client address.
                "insert_xforwarded_for": "enabled",
            },
        )
        profiles = [f"{base}-http", f"{base}-tcp"]
        needs = ["http", "tcp", "server-ssl", "authenticate-name"]
        tls_profiles = {
            "client_profiles": [vs.client_ssl_profile],
            "server_profiles": [profile_path],
        }
    plan.device(
        ltm.VirtualServer,
        "virtual-server",
        {
            "name": f"{base}-vs",
            "destination": vs.destination,
            "port": vs.port,
            "pool": f"{base}-pool",
            "persistence_profiles": [f"{base}-{persistence}"],
            "profiles": profiles,
            **_snat(vs.snat),
            **tls_profiles,
        },
        after=["pool", persistence, *needs, *members],
        # BIG-IP refuses a second virtual server on the same destination and port, so a
        # renamed virtual server (new service FQDN or partition) must go before it comes.
        delete_before_replace=True,
    )


def _snat(snat: str | None) -> dict[str, str]:
    """Source address translation, always explicit so that removing it is applied too.

    Without it the nodes answer the client's own address and the answer must route back
    through the BIG-IP; in a one-arm design it does not, so use automap (the BIG-IP's self
    IP) or a SNAT pool there. The provider sends `sourceAddressTranslation` {type, pool}
    (resource_bigip_ltm_virtual_server.go: "none, automap, snat"; snatpool with "snat").
    """
    if snat is None:
        return {"source_address_translation": "none"}
    if snat == "automap":
        return {"source_address_translation": "automap"}
    return {"source_address_translation": "snat", "snatpool": snat}


@dataclass
class _Planned:
    make: Callable[..., pulumi.CustomResource]
    inputs: dict[str, Any]
    after: tuple[str, ...]
    on_device: bool  # a pulumi_f5bigip resource (else one of our REST dynamic resources)
    options: dict[str, Any] = field(default_factory=dict)


class _Plan:
    """Every resource an entry declares, known before the first one is registered.

    Knowing them all first gives the device-group check a digest of the whole declared
    configuration (`revision`) and lets every resource depend on that check.
    """

    def __init__(self, names: Names) -> None:
        self.names = names
        self.planned: dict[str, _Planned] = {}

    def device(
        self,
        make: Callable[..., pulumi.CustomResource],
        what: str,
        inputs: dict[str, Any],
        *,
        after: Sequence[str] = (),
        **options: Any,
    ) -> None:
        self.planned[what] = _Planned(make, inputs, tuple(after), True, options)

    def rest(
        self,
        make: Callable[..., pulumi.CustomResource],
        what: str,
        inputs: dict[str, Any],
        *,
        after: Sequence[str] = (),
    ) -> None:
        self.planned[what] = _Planned(make, inputs, tuple(after), False)

    def revision(self) -> pulumi.Output[str]:
        """SHA-256 over every declared input (the CA content is covered by its object name)."""
        declared = {
            what: {key: value for key, value in planned.inputs.items() if key != "content"}
            for what, planned in self.planned.items()
        }
        return pulumi.Output.from_input(declared).apply(
            lambda values: hashlib.sha256(
                json.dumps(values, sort_keys=True, default=str).encode()
            ).hexdigest()
        )

    def declare(
        self, parent: pulumi.Resource, provider: f5bigip.Provider, first: pulumi.Resource | None
    ) -> dict[str, pulumi.CustomResource]:
        declared: dict[str, pulumi.CustomResource] = {}
        for what, planned in self.planned.items():
            depends_on: list[pulumi.Resource] = [declared[name] for name in planned.after]
            if first is not None:
                depends_on.insert(0, first)
            opts = pulumi.ResourceOptions(
                parent=parent,
                provider=provider if planned.on_device else None,
                depends_on=depends_on or None,
                **planned.options,
            )
            declared[what] = planned.make(
                self.names(what), **planned.inputs, opts=self.names.options(what, opts)
            )
        return declared


def _management(lb: Any) -> Management:
    return Management(
        address=lb.address,
        port=int(lb.port),
        username=lb.username,
        password_key=lb.password_key,
        ca_path=str(lb.management_ca_path)
        if lb.validate_management_certificate and lb.management_ca_path
        else "",
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
    names = _provider_logical_names(lb)
    provider = f5bigip.Provider(
        names("bigip"),
        # A host name or IP: the provider adds https:// and appends `port` itself.
        address=lb.address,
        port=str(lb.port),  # a string in this provider's schema
        username=lb.username,
        # Otherwise every operation posts telemetry to F5.
        teem_disable=True,
        opts=names.options("bigip", pulumi.ResourceOptions(parent=parent)),
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


def check(lb: Any, cluster: Any) -> list[str]:
    """Everything this module refuses for `lb` in front of `cluster` (settings.Cluster), asked
    before the first resource of the stack is declared (a refusal registers nothing)."""
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
    for what, word in (("partition", lb.partition), ("service FQDN", cluster.service_fqdn)):
        if not _OBJECT_WORD.fullmatch(word):
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
