"""The check itself: each load balancer's verification of each node, simulated with `pki`.

Every node of every stack is observed once (`observe_nodes`: one bounded pool, a deadline per
attempt) while the load balancers' trust is read from the devices (a second bounded pool);
then, for each load balancer and each node of its cluster, the audit does what the load
balancer does in the handshake: the served chain must lead to a root CA the device trusts,
for the name it checks, and be valid now. On top come the program's own rules: expiry within
the warning horizon, the SAN rule, the pin, and all nodes of a cluster agreeing on their
root CA. Nothing is ever written anywhere.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509

from components import pki
from components.access_trust import node_addresses, required_names
from components.appliance.client import NodeAddress, ServedNode
from components.appliance.observation import NodeResult, observe_nodes
from components.appliance.stack_ca import stack_ca_subject
from components.audit.appliance_side import ApplianceTrust, read_appliance_trust
from components.audit.device_trust import DeviceTrust, read_device_trust
from components.audit.stack_files import StackFile
from components.settings import Cluster, F5LoadBalancer, LoadBalancer

__all__ = [
    "MAX_PARALLEL_DEVICE_READS",
    "Audit",
    "ClusterFacts",
    "NodeFacts",
    "Row",
    "Verdict",
    "run_audit",
]

# BIG-IP sessions open at once (each is a login, two GETs and a logout).
MAX_PARALLEL_DEVICE_READS = 8


class Verdict(enum.Enum):
    """Monitoring states; `exit_code` is the Nagios plugin convention."""

    OK = 0
    WARN = 1
    FAIL = 2
    UNKNOWN = 3

    @property
    def exit_code(self) -> int:
        return int(self.value)


# Worst first, for the overall state: a definite failure outranks a row that could not be
# checked, which outranks a warning.
_SEVERITY = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.UNKNOWN: 2, Verdict.FAIL: 3}


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return max(verdicts, key=_SEVERITY.__getitem__, default=Verdict.OK)


@dataclass(frozen=True)
class Row:
    """One load balancer's verdict on one node."""

    stack: str
    cluster: str
    node: str
    load_balancer: str
    kind: str
    verdict: Verdict
    reasons: tuple[str, ...]
    checked_name: str
    node_certificate_expires: datetime | None
    node_root_ca_sha256: str


@dataclass(frozen=True)
class NodeFacts:
    fqdn: str
    root_ca_sha256: str  # "" when the node could not be observed
    certificate_expires: datetime | None
    problem: str | None  # why it could not be observed


@dataclass(frozen=True)
class ClusterFacts:
    """What the picture shows of one cluster: nodes, load balancers and root CAs."""

    stack: str
    cluster: str
    nodes: tuple[NodeFacts, ...]
    load_balancers: tuple[DeviceTrust, ...]
    root_cas: Mapping[str, tuple[str, datetime | None]]  # sha256 -> (subject, not after)


@dataclass(frozen=True)
class Audit:
    rows: tuple[Row, ...]
    clusters: tuple[ClusterFacts, ...]
    generated_at: datetime
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        return worst([row.verdict for row in self.rows]) if self.rows else Verdict.UNKNOWN


def run_audit(
    stacks: Sequence[StackFile],
    *,
    now: datetime | None = None,
    appliance: bool = False,
    progress: Callable[[str], None] = lambda _line: None,
) -> Audit:
    """Observe every node once, read every load balancer once, and judge every pair. With
    `appliance`, also read which load balancer root CA each node trusts (a login)."""
    started = time.perf_counter()
    moment = now or datetime.now(UTC)
    addresses = [
        address
        for stack in stacks
        for cluster in stack.settings.clusters
        for address in node_addresses(cluster)
    ]
    # Keyed by the stack's position: two stack files may carry the same stack name.
    devices = [
        (index, lb) for index, stack in enumerate(stacks) for lb in stack.settings.load_balancers
    ]
    progress(
        f"observing {len(set(addresses))} nodes of "
        f"{sum(len(s.settings.clusters) for s in stacks)} clusters and reading "
        f"{len(devices)} load balancers, all at once ..."
    )
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL_DEVICE_READS) as pool:
        # Submitted first, so the device reads run while the nodes are being observed.
        reads: dict[tuple[int, str], Future[DeviceTrust]] = {
            (index, lb.name): pool.submit(read_device_trust, lb) for index, lb in devices
        }
        results = observe_nodes(addresses)
        sides: dict[NodeAddress, Future[ApplianceTrust]] = {}
        if appliance:
            for stack in stacks:
                for cluster in stack.settings.clusters:
                    for address in node_addresses(cluster):
                        result = results[address]
                        if cluster.load_balancer_root_ca and isinstance(result, ServedNode):
                            sides[address] = pool.submit(
                                read_appliance_trust, cluster, address, result
                            )
        trusts = {key: future.result() for key, future in reads.items()}
        appliance_trusts = {address: future.result() for address, future in sides.items()}
    unreachable = sum(not isinstance(result, ServedNode) for result in results.values())
    progress(
        f"observed {len(results)} nodes ({unreachable} could not be observed) and read "
        f"{len(trusts)} load balancers in {time.perf_counter() - started:.1f} s"
    )
    rows: list[Row] = []
    facts: list[ClusterFacts] = []
    for index, stack in enumerate(stacks):
        settings = stack.settings
        for cluster in settings.clusters:
            cluster_addresses = node_addresses(cluster)
            cluster_results = {a: results[a] for a in cluster_addresses}
            lbs = settings.load_balancers_for(cluster.name)
            lb_trusts = [trusts[(index, lb.name)] for lb in lbs]
            judge = _ClusterJudge(
                cluster,
                cluster_results,
                settings.expiry_warning_days,
                moment,
                appliance_trusts,
                generated_ca=cluster.name in stack.stack_ca_clusters,
            )
            for lb, trust in zip(lbs, lb_trusts, strict=True):
                for address in cluster_addresses:
                    rows.append(judge.row(stack.name, address, lb, trust))
            facts.append(judge.facts(stack.name, lb_trusts))
    return Audit(tuple(rows), tuple(facts), moment, time.perf_counter() - started)


class _ClusterJudge:
    """The rules for one cluster, with what all its nodes serve at hand (agreement, pins)."""

    def __init__(
        self,
        cluster: Cluster,
        results: Mapping[NodeAddress, NodeResult],
        horizon_days: int,
        now: datetime,
        appliance_trusts: Mapping[NodeAddress, ApplianceTrust],
        *,
        generated_ca: bool = False,
    ) -> None:
        self.cluster = cluster
        # `ssh.issuing_ca: generated`: the stack's own CA is approved by the program without a
        # pin, by its fingerprint in the state, which the audit does not read. Its subject (the
        # program's own stack_ca_subject) is all the audit can know of it.
        self.stack_ca_subject = stack_ca_subject(cluster.service_fqdn) if generated_ca else None
        self.appliance_trusts = appliance_trusts
        self.results = results
        self.horizon_days = horizon_days
        self.now = now
        served = [r for r in results.values() if isinstance(r, ServedNode)]
        self.published = collections.Counter(node.root_ca_sha256 for node in served)
        # Every certificate seen, so a fingerprint that a BIG-IP reports can be matched.
        self.known: dict[str, x509.Certificate] = {}
        for node in served:
            for certificate in (node.root_ca, *node.intermediates):
                self.known.setdefault(pki.sha256_fingerprint(certificate), certificate)
        self.pins = set(cluster.root_ca_sha256)
        self.incoming = ""
        if cluster.incoming_root_ca:
            incoming = pki.load_certificate(cluster.incoming_root_ca, "incoming_root_ca")
            self.incoming = pki.sha256_fingerprint(incoming)
            self.known.setdefault(self.incoming, incoming)

    def row(self, stack: str, address: NodeAddress, lb: LoadBalancer, trust: DeviceTrust) -> Row:
        fail: list[str] = list(trust.problems)
        warn: list[str] = []
        unknown: list[str] = [trust.unknown] if trust.unknown else []
        result = self.results[address]
        # The name the device checks; where it does not say (a bundle file), the program's
        # model: the node FQDN in passthrough mode, the service FQDN behind a terminating one.
        expected_name = (
            self.cluster.service_fqdn if isinstance(lb, F5LoadBalancer) else address.verified_name
        )
        name = trust.checked_name or expected_name
        if trust.checked_name and trust.checked_name != expected_name:
            warn.append(
                f"load balancer {lb.name} checks the name {trust.checked_name}; the stack "
                f"declares {expected_name}."
            )
        expires: datetime | None = None
        root_sha256 = ""
        if not isinstance(result, ServedNode):
            unknown.append(str(result))
        else:
            expires = result.served_certificate.not_valid_after_utc
            root_sha256 = result.root_ca_sha256
            if trust.unknown is None:
                fail.extend(self._chain(result, lb, trust, name))
            fail.extend(self._names(result))
            pin_fail, pin_unknown = self._pin(result)
            fail.extend(pin_fail)
            unknown.extend(pin_unknown)
            warn.extend(self._expiry(result))
            warn.extend(self._agreement(result))
            trust_warn, trust_unknown = self._unpinned_trust(lb, trust)
            warn.extend(trust_warn)
            unknown.extend(trust_unknown)
            side = self.appliance_trusts.get(address)
            if side is not None and side.problem:
                fail.append(side.problem)
            if side is not None and side.unknown:
                unknown.append(side.unknown)
        if fail:
            verdict = Verdict.FAIL
        elif unknown:
            verdict = Verdict.UNKNOWN
        elif warn:
            verdict = Verdict.WARN
        else:
            verdict = Verdict.OK
        return Row(
            stack=stack,
            cluster=self.cluster.name,
            node=address.fqdn,
            load_balancer=lb.name,
            kind=lb.kind,
            verdict=verdict,
            reasons=tuple(dict.fromkeys([*fail, *unknown, *warn])),
            checked_name=trust.checked_name if trust.checked_name is not None else name,
            node_certificate_expires=expires,
            node_root_ca_sha256=root_sha256,
        )

    def _chain(
        self, node: ServedNode, lb: LoadBalancer, trust: DeviceTrust, name: str
    ) -> list[str]:
        roots = list(trust.trusted) or [
            self.known[sha256] for sha256 in trust.trusted_sha256s if sha256 in self.known
        ]
        if not roots:
            held = ", ".join(trust.trusted_sha256s) or "nothing"
            if trust.problems:
                return []  # already said why it trusts nothing
            return [
                f"load balancer {lb.name} trusts no root CA that node {node.fqdn}'s chain can "
                f"lead to (it trusts {held}; the node's root CA is {node.root_ca_sha256})."
            ]
        chain = [node.served_certificate, *node.intermediates]
        try:
            pki.verify_served_chain(
                chain,
                roots,
                name,
                f"the certificate served by node {node.fqdn}, as load balancer {lb.name} "
                "verifies it,",
                self.now,
            )
        except pki.CertificateError as error:
            return [str(error)]
        return []

    def _names(self, node: ServedNode) -> list[str]:
        problems = []
        try:
            pki.check_server_names(
                node.served_certificate,
                self.cluster.service_fqdn,
                required_names(self.cluster),
                f"the certificate served by node {node.fqdn}",
            )
        except pki.CertificateError as error:
            problems.append(str(error))
        if not node.issued_by_root:
            problems.append(
                f"node {node.fqdn} serves a certificate that the root CA it publishes "
                f"({node.root_ca_sha256}) did not issue (a custom certificate from another CA?)."
            )
        return problems

    def _pin(self, node: ServedNode) -> tuple[list[str], list[str]]:
        """(failures, unknowns) of the pin rule: an unpinned root CA fails, unless it may be
        the stack's own CA, which the audit can neither confirm nor refuse."""
        if not self.pins or node.root_ca_sha256 in self.pins:
            return [], []
        said = f"node {node.fqdn} publishes root CA {node.root_ca_sha256}"
        if self._may_be_stack_ca(node.root_ca):
            return [], [f"{said}, {self._stack_ca_advice()}"]
        return [f"{said}, which the stack does not pin (root_ca_sha256)."], []

    def _may_be_stack_ca(self, certificate: x509.Certificate | None) -> bool:
        """A root CA with the stack CA's subject, while no pinned root CA seen here has it:
        once the stack CA is pinned (and seen), any other with its subject is provably not
        the stack's, and the ordinary pin rule judges it."""
        subject = self.stack_ca_subject
        if subject is None or certificate is None or certificate.subject != subject:
            return False
        return not any(
            sha256 in self.pins and seen.subject == subject for sha256, seen in self.known.items()
        )

    def _stack_ca_advice(self) -> str:
        return (
            "which carries the subject of this stack's own CA (ssh.issuing_ca: generated), "
            "approved by the program by its fingerprint in the stack state, which this audit "
            "does not read: compare it with the stack output root_ca_sha256s (`pulumi stack "
            f"output {self.cluster.name}`) and pin it in root_ca_sha256 (the program accepts "
            "the pin) to make this check conclusive."
        )

    def _expiry(self, node: ServedNode) -> list[str]:
        warnings = []
        for what, certificate in (
            ("certificate", node.served_certificate),
            ("root CA", node.root_ca),
        ):
            days = pki.days_until_expiry(certificate, self.now)
            if 0 <= days < self.horizon_days:
                date = certificate.not_valid_after_utc.strftime("%Y-%m-%d")
                warnings.append(
                    f"node {node.fqdn}'s {what} expires in {days} days (on {date}), within the "
                    f"warning horizon of {self.horizon_days} days (expiry_warning_days)."
                )
        return warnings

    def _agreement(self, node: ServedNode) -> list[str]:
        """A node whose root CA differs from what most nodes publish, unless every root CA is
        approved (pinned both, or the announced incoming one: a rotation in progress)."""
        if len(self.published) < 2:
            return []
        approved = set(self.pins) | ({self.incoming} if self.incoming else set())
        if set(self.published) <= approved:
            return []
        most = max(self.published.values())
        if (
            self.published[node.root_ca_sha256] == most
            and list(self.published.values()).count(most) == 1
        ):
            return []
        others = ", ".join(
            f"{count} node(s) {sha256}"
            for sha256, count in self.published.items()
            if sha256 != node.root_ca_sha256
        )
        return [
            f"nodes disagree on the root CA: node {node.fqdn} publishes "
            f"{node.root_ca_sha256}, {others}."
        ]

    def _unpinned_trust(self, lb: LoadBalancer, trust: DeviceTrust) -> tuple[list[str], list[str]]:
        """(warnings, unknowns): a trusted root CA the stack does not pin is a warning, one
        that may be the stack's own CA cannot be judged here (see _pin)."""
        if not self.pins:
            return [], []
        extra = [s for s in trust.trusted_sha256s if s not in self.pins and s != self.incoming]
        held = dict(zip(trust.trusted_sha256s, trust.trusted, strict=False))
        warnings, unknowns = [], []
        for sha256 in extra:
            said = f"load balancer {lb.name} also trusts {sha256}"
            if self._may_be_stack_ca(held.get(sha256) or self.known.get(sha256)):
                unknowns.append(f"{said}, {self._stack_ca_advice()}")
            else:
                warnings.append(f"{said}, which the stack does not pin.")
        return warnings, unknowns

    def facts(self, stack: str, trusts: Sequence[DeviceTrust]) -> ClusterFacts:
        nodes = []
        roots: dict[str, tuple[str, datetime | None]] = {}
        for address, result in self.results.items():
            if isinstance(result, ServedNode):
                nodes.append(
                    NodeFacts(
                        address.fqdn,
                        result.root_ca_sha256,
                        result.served_certificate.not_valid_after_utc,
                        None,
                    )
                )
                roots[result.root_ca_sha256] = (
                    result.root_ca.subject.rfc4514_string(),
                    result.root_ca.not_valid_after_utc,
                )
            else:
                nodes.append(NodeFacts(address.fqdn, "", None, str(result)))
        for trust in trusts:
            for index, sha256 in enumerate(trust.trusted_sha256s):
                if sha256 in roots:
                    continue
                certificate = self.known.get(sha256)
                if index < len(trust.trusted):
                    certificate = trust.trusted[index]
                subject = certificate.subject.rfc4514_string() if certificate else "(not seen)"
                expiry = trust.trusted_expiry[index] if index < len(trust.trusted_expiry) else None
                roots[sha256] = (subject, expiry)
        return ClusterFacts(stack, self.cluster.name, tuple(nodes), tuple(trusts), roots)
