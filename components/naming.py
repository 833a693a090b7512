"""Logical resource names, and the aliases that let a renamed stack entry keep its resources.

A resource's logical name is part of its URN, so renaming a cluster or a load balancer entry
would make Pulumi create new resources and delete the old ones, both aimed at the SAME device
objects (a bundle file, a server-SSL profile): the delete would take away what the create
just made. With `previous_name` set on the entry, every resource named after it also answers
to its old name (`pulumi.Alias(name=...)`), so the engine moves it to the new URN instead
(reference/pulumi.md, "Renaming a resource").
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

__all__ = ["Names"]


@dataclass(frozen=True)
class Names:
    """Logical names under one prefix; with `previous`, each also answers to its old name."""

    prefix: str
    previous: str | None = None

    def __call__(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}" if suffix else self.prefix

    def options(
        self, suffix: str, opts: pulumi.ResourceOptions | None = None
    ) -> pulumi.ResourceOptions:
        """`opts`, plus an alias to the old name when the entry was renamed."""
        opts = opts or pulumi.ResourceOptions()
        if not self.previous or self.previous == self.prefix:
            return opts
        old = f"{self.previous}-{suffix}" if suffix else self.previous
        return pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name=old)])
        )
