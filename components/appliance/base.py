"""What every appliance resource shares: one per cluster, create and update converge the same way.

The id is the cluster's name when the resource was created (a rename keeps it). `create` and
`update` both observe the nodes and change only what differs, so a failed `up` converges when
it is run again. `delete` leaves the
appliance as it is: a node must always serve a certificate and trust its root CA, and the
configurator offers no removal of the load balancer's root CA that we know of.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CreateResult, UpdateResult

from components.dynamic import TrustProvider

__all__ = ["ApplianceProvider"]


class ApplianceProvider(TrustProvider):
    # No replace keys: the cluster name is a label (messages, the id), and a renamed cluster
    # (previous_name, an alias) must update in place, never recreate what it manages.

    def converge(self, props: dict[str, Any]) -> dict[str, Any]:
        """Make the cluster match `props`; return the outputs to store."""
        raise NotImplementedError

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props["cluster"]), outs=self.converge(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.converge(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None
