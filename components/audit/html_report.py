"""One self-contained HTML page: a picture of the trust graph (inline SVG) and the table.

Nothing is fetched when the page opens: no script, no external style sheet, font or image.
Per cluster, load balancers stand on the left, nodes in the middle and root CAs on the
right; a load balancer's line to a node has the colour of its verdict (hover for the
reasons), a node's grey line goes to the root CA it publishes, and a load balancer's dashed
line to each root CA it trusts.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from components.audit.verification import Audit, ClusterFacts, Row, Verdict

__all__ = ["VERDICT_COLOURS", "as_html"]

VERDICT_COLOURS = {
    Verdict.OK: "#2ca02c",
    Verdict.WARN: "#ff9f1c",
    Verdict.FAIL: "#d62728",
    Verdict.UNKNOWN: "#7f7f7f",
}
_ROW = 66
_BOX_HEIGHT = 50
_LB_X, _LB_W = 20, 250
_NODE_X, _NODE_W = 400, 290
_ROOT_X, _ROOT_W = 820, 320
_WIDTH = 1160

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
.summary { margin: 0 0 16px 0; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 4px; color: #fff;
         font-weight: 600; }
svg text { font-size: 12px; fill: #222; }
svg .title { font-weight: 600; }
svg .small { font-size: 11px; fill: #555; }
svg .cluster-label { font-size: 13px; font-weight: 600; fill: #333; }
table { border-collapse: collapse; margin-top: 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td ul { margin: 0; padding-left: 18px; }
"""


def _short(sha256: str) -> str:
    return sha256[:14] + "…" if len(sha256) > 14 else sha256


def _date(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "-"


def _common_name(subject: str) -> str:
    for part in subject.split(","):
        if part.startswith("CN="):
            return part[3:]
    return subject or "(no subject)"


def _fit(text: str, width: int, title: bool) -> str:
    """Cut a line to what fits the box (about 7.5 px per character of a title, 6.2 of the
    small line below it)."""
    room = int((width - 16) / (7.5 if title else 6.2))
    if len(text) <= room:
        return text
    # Names differ at their ends as often as at their starts (two root CAs of one kind):
    # keep both ends of a title.
    if title:
        head = room // 2
        return text[:head] + "…" + text[len(text) - (room - head - 1) :]
    return text[: room - 1] + "…"


def _box(x: int, y: int, width: int, lines: list[str], css: str, data: str) -> str:
    texts = "".join(
        f'<text x="{x + 8}" y="{y + 17 + 15 * i}" class="{"title" if i == 0 else "small"}">'
        f"{escape(_fit(line, width, i == 0))}</text>"
        for i, line in enumerate(lines)
    )
    return (
        f'<g class="{css}" {data}><rect x="{x}" y="{y}" width="{width}" height="{_BOX_HEIGHT}" '
        f'rx="6" fill="#fff" stroke="#888"/>{texts}</g>'
    )


def _cluster_svg(facts: ClusterFacts, rows: list[Row], top: int) -> tuple[str, int]:
    lbs, nodes, roots = facts.load_balancers, facts.nodes, list(facts.root_cas.items())
    count = max(len(lbs), len(nodes), len(roots), 1)
    height = count * _ROW + 40
    parts = [
        f'<g class="cluster" data-cluster="{escape(facts.cluster)}">'
        f'<rect x="4" y="{top}" width="{_WIDTH - 8}" height="{height}" rx="10" '
        'fill="#f7f9fc" stroke="#c5d0de"/>'
        f'<text x="16" y="{top + 20}" class="cluster-label">stack {escape(facts.stack)} · '
        f"cluster {escape(facts.cluster)}</text>"
    ]

    def y_of(index: int, total: int) -> int:
        # Centre each column in the block.
        offset = (count - total) * _ROW // 2
        return top + 32 + offset + index * _ROW

    lb_y = {t.load_balancer: y_of(i, len(lbs)) for i, t in enumerate(lbs)}
    node_y = {n.fqdn: y_of(i, len(nodes)) for i, n in enumerate(nodes)}
    root_y = {sha: y_of(i, len(roots)) for i, (sha, _) in enumerate(roots)}
    mid = _BOX_HEIGHT // 2
    edges = []
    for trust in lbs:
        for sha256 in trust.trusted_sha256s:
            if sha256 in root_y:
                start = lb_y[trust.load_balancer]
                edges.append(
                    f'<path class="edge trusts" d="M{_LB_X + _LB_W},{start + mid}'
                    f" C{_NODE_X},{start - 30} {_NODE_X + _NODE_W},"
                    f'{root_y[sha256] - 30} {_ROOT_X},{root_y[sha256] + mid}" fill="none" '
                    'stroke="#1f77b4" stroke-width="1.5" stroke-dasharray="6 4" opacity="0.55">'
                    f"<title>{escape(trust.load_balancer)} trusts {escape(sha256)}</title></path>"
                )
    for node in nodes:
        if node.root_ca_sha256 in root_y:
            edges.append(
                f'<line class="edge publishes" x1="{_NODE_X + _NODE_W}" '
                f'y1="{node_y[node.fqdn] + mid}" x2="{_ROOT_X}" '
                f'y2="{root_y[node.root_ca_sha256] + mid}" stroke="#999" stroke-width="1.5">'
                f"<title>{escape(node.fqdn)} publishes {escape(node.root_ca_sha256)}</title></line>"
            )
    for row in rows:
        if row.load_balancer not in lb_y or row.node not in node_y:
            continue
        reasons = "\n".join(row.reasons) or "accepted"
        edges.append(
            f'<line class="edge verdict verdict-{row.verdict.name}" x1="{_LB_X + _LB_W}" '
            f'y1="{lb_y[row.load_balancer] + mid}" x2="{_NODE_X}" y2="{node_y[row.node] + mid}" '
            f'stroke="{VERDICT_COLOURS[row.verdict]}" stroke-width="3">'
            f"<title>{escape(row.load_balancer)} → {escape(row.node)}: {row.verdict.name}\n"
            f"{escape(reasons)}</title></line>"
        )
    parts.extend(edges)
    for trust in lbs:
        status = "could not read" if trust.unknown else f"trusts {len(trust.trusted_sha256s)}"
        name_check = {None: "", "": " · no name check"}.get(
            trust.checked_name, f" · checks {trust.checked_name}"
        )
        parts.append(
            _box(
                _LB_X,
                lb_y[trust.load_balancer],
                _LB_W,
                [trust.load_balancer, f"{trust.kind} · {status}{name_check}"],
                "load-balancer",
                f'data-name="{escape(trust.load_balancer)}"',
            )
        )
    for node in nodes:
        second = (
            f"certificate expires {_date(node.certificate_expires)}"
            if node.problem is None
            else "could not be observed"
        )
        parts.append(
            _box(
                _NODE_X,
                node_y[node.fqdn],
                _NODE_W,
                [node.fqdn, second],
                "node",
                f'data-fqdn="{escape(node.fqdn)}"',
            )
        )
    for sha256, (subject, expires) in roots:
        parts.append(
            _box(
                _ROOT_X,
                root_y[sha256],
                _ROOT_W,
                [
                    _common_name(subject),
                    f"root CA {_short(sha256)} · expires {_date(expires)}",
                ],
                "root-ca",
                f'data-sha256="{escape(sha256)}"',
            )
        )
    parts.append("</g>")
    return "".join(parts), height


def _legend(top: int) -> str:
    items = [(f"{v.name}", colour, "") for v, colour in VERDICT_COLOURS.items()]
    items += [("publishes", "#999", ""), ("trusts", "#1f77b4", ' stroke-dasharray="6 4"')]
    parts = []
    for i, (label, colour, dash) in enumerate(items):
        x = 16 + i * 130
        parts.append(
            f'<line x1="{x}" y1="{top}" x2="{x + 30}" y2="{top}" stroke="{colour}" '
            f'stroke-width="3"{dash}/><text x="{x + 36}" y="{top + 4}">{label}</text>'
        )
    return "".join(parts)


def _picture(audit: Audit) -> str:
    top = 8
    blocks = []
    for facts in audit.clusters:
        rows = [r for r in audit.rows if r.stack == facts.stack and r.cluster == facts.cluster]
        svg, height = _cluster_svg(facts, rows, top)
        blocks.append(svg)
        top += height + 12
    blocks.append(_legend(top + 12))
    total = top + 28
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{total}" '
        f'viewBox="0 0 {_WIDTH} {total}" role="img" aria-label="trust graph">'
        + "".join(blocks)
        + "</svg>"
    )


def _table(audit: Audit) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "Stack",
            "Cluster",
            "Node",
            "Load balancer",
            "Verdict",
            "Name checked",
            "Node certificate expires",
            "Reasons",
        )
    )
    body = []
    for row in audit.rows:
        colour = VERDICT_COLOURS[row.verdict]
        reasons = "".join(f"<li>{escape(reason)}</li>" for reason in row.reasons)
        body.append(
            "<tr>"
            f"<td>{escape(row.stack)}</td><td>{escape(row.cluster)}</td>"
            f"<td>{escape(row.node)}</td><td>{escape(row.load_balancer)} ({row.kind})</td>"
            f'<td><span class="badge" style="background:{colour}">{row.verdict.name}</span></td>'
            f"<td>{escape(row.checked_name or '(none)')}</td>"
            f"<td>{_date(row.node_certificate_expires)}</td>"
            f"<td>{'<ul>' + reasons + '</ul>' if reasons else ''}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def as_html(audit: Audit) -> str:
    verdict = audit.verdict
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Trust audit</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Trust audit: does each load balancer accept each node?</h1>"
        f'<p class="summary"><span class="badge" style="background:'
        f'{VERDICT_COLOURS[verdict]}">{verdict.name}</span> '
        f"{len(audit.rows)} checks, {audit.generated_at.strftime('%Y-%m-%d %H:%M UTC')}, "
        f"exit code {verdict.exit_code}</p>"
        f"{_picture(audit)}{_table(audit)}</body></html>\n"
    )
