"""The audit for people (a terminal table) and for machines (JSON)."""

from __future__ import annotations

import collections
import json
import textwrap
from datetime import datetime
from typing import Any

from components.audit.verification import Audit, Row, Verdict

__all__ = ["as_json", "as_table"]

_COLUMNS = ("STACK", "CLUSTER", "NODE", "LOAD BALANCER", "VERDICT", "NAME CHECKED", "EXPIRES")


def _date(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "-"


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.stack,
        row.cluster,
        row.node,
        row.load_balancer,
        row.verdict.name,
        row.checked_name or "(none)",
        _date(row.node_certificate_expires),
    )


def as_table(audit: Audit, width: int = 100) -> str:
    """Node x load balancer, one line each, the reasons indented below the line they explain."""
    cells = [_cells(row) for row in audit.rows]
    widths = [max(len(text) for text in column) for column in zip(_COLUMNS, *cells, strict=False)]
    lines = ["  ".join(text.ljust(w) for text, w in zip(_COLUMNS, widths, strict=True)).rstrip()]
    for row, texts in zip(audit.rows, cells, strict=True):
        lines.append("  ".join(t.ljust(w) for t, w in zip(texts, widths, strict=True)).rstrip())
        for reason in row.reasons:
            lines.extend(
                textwrap.wrap(
                    reason,
                    width,
                    initial_indent="    - ",
                    subsequent_indent="      ",
                    break_on_hyphens=False,
                    break_long_words=False,
                )
            )
    counts = collections.Counter(row.verdict for row in audit.rows)
    summary = ", ".join(
        f"{counts[verdict]} {verdict.name}" for verdict in Verdict if counts[verdict]
    )
    lines.append("")
    lines.append(
        f"{audit.verdict.name}: {len(audit.rows)} checks ({summary or 'none'}) in "
        f"{audit.seconds:.1f} s; exit code {audit.verdict.exit_code}."
    )
    return "\n".join(lines)


def as_json(audit: Audit) -> str:
    document: dict[str, Any] = {
        "verdict": audit.verdict.name,
        "exit_code": audit.verdict.exit_code,
        "generated_at": audit.generated_at.isoformat(),
        "seconds": round(audit.seconds, 3),
        "rows": [
            {
                "stack": row.stack,
                "cluster": row.cluster,
                "node": row.node,
                "load_balancer": row.load_balancer,
                "kind": row.kind,
                "verdict": row.verdict.name,
                "reasons": list(row.reasons),
                "name_checked": row.checked_name,
                "node_certificate_expires": row.node_certificate_expires.isoformat()
                if row.node_certificate_expires
                else None,
                "node_root_ca_sha256": row.node_root_ca_sha256 or None,
            }
            for row in audit.rows
        ],
        "clusters": [
            {
                "stack": facts.stack,
                "cluster": facts.cluster,
                "nodes": [
                    {
                        "fqdn": node.fqdn,
                        "root_ca_sha256": node.root_ca_sha256 or None,
                        "certificate_expires": node.certificate_expires.isoformat()
                        if node.certificate_expires
                        else None,
                        "problem": node.problem,
                    }
                    for node in facts.nodes
                ],
                "load_balancers": [
                    {
                        "name": trust.load_balancer,
                        "kind": trust.kind,
                        "where": trust.where,
                        "trusted_sha256s": list(trust.trusted_sha256s),
                        "name_checked": trust.checked_name,
                        "problems": list(trust.problems),
                        "unknown": trust.unknown,
                    }
                    for trust in facts.load_balancers
                ],
                "root_cas": [
                    {
                        "sha256": sha256,
                        "subject": subject,
                        "expires": expires.isoformat() if expires else None,
                    }
                    for sha256, (subject, expires) in facts.root_cas.items()
                ],
            }
            for facts in audit.clusters
        ],
    }
    return json.dumps(document, indent=2)
