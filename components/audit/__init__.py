"""Trust audit, read-only: does each load balancer accept each node right now, and for how long.

`python -m components.audit [stack files...] [--json] [--html FILE]` reads stack files
directly (no Pulumi CLI), observes every node once (`observation.observe_nodes`), reads each
load balancer's trust from the device (`device_trust`), simulates its verification of every
node with `components.pki` (`verification`), and prints a table, JSON, or an HTML page with a
picture (`report`, `html_report`). Exit codes follow the monitoring convention: 0 OK, 1 WARN,
2 FAIL, 3 could not check. It never writes to a node, a load balancer or a bundle file.
"""
