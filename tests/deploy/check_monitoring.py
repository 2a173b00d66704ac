"""Offline checks of deploy/monitoring/ and docs/metrics.md against src/telemetry.rs.

Usage: check_monitoring.py REPO_DIR OUT_DIR

- Every metric the Grafana dashboard or the alert rules query is one cubesat exports (declared
  in src/telemetry.rs; histograms also as _bucket/_sum/_count).
- Every metric declared in src/telemetry.rs has a row in docs/metrics.md.
- Every dashboard query is valid PromQL: the queries, with Grafana's variables filled in, are
  written to OUT_DIR/dashboard-rules.yaml as recording rules for `promtool check rules`.
Exits 1 naming every problem.
"""

import json
import re
import sys
from pathlib import Path

repo, out = Path(sys.argv[1]), Path(sys.argv[2])
problems = []
telemetry = (repo / "src/telemetry.rs").read_text()
declared = set(re.findall(r'pub const \w+: &str = "(cubesat_\w+)";', telemetry))
histograms = {m for m in declared if m.endswith("_seconds") or "describe_histogram" in m}
exported = set(declared)
for h in histograms:
    exported |= {h + "_bucket", h + "_sum", h + "_count"}

dashboard = json.loads((repo / "deploy/monitoring/cubesat-dashboard.json").read_text())
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
rules = (repo / "deploy/monitoring/cubesat-alerts.yaml").read_text()
used = set()
for text in exprs + [rules]:
    used |= set(re.findall(r"\b(cubesat_\w+)", text))
for name in sorted(used - exported):
    problems.append(f"queried but not exported by cubesat (src/telemetry.rs): {name}")

doc = (repo / "docs/metrics.md").read_text()
for name in sorted(declared):
    if f"`{name}`" not in doc:
        problems.append(f"docs/metrics.md has no row for {name}")

ids = [p["id"] for p in dashboard["panels"]]
if len(ids) != len(set(ids)):
    problems.append("dashboard panel ids repeat")

out.mkdir(parents=True, exist_ok=True)
fill = {"$__rate_interval": "5m", "$namespace": ".*", "$pod": ".*"}
lines = ["groups:", "  - name: dashboard", "    rules:"]
for i, expr in enumerate(exprs):
    for k, v in fill.items():
        expr = expr.replace(k, v)
    lines += [f"      - record: dashboard_query_{i}", f"        expr: {json.dumps(expr)}"]
(out / "dashboard-rules.yaml").write_text("\n".join(lines) + "\n")

for p in problems:
    print(f"FAIL {p}")
print(f"monitoring: {len(exprs)} dashboard queries, {len(declared)} metrics declared, {len(problems)} problems")
sys.exit(1 if problems else 0)
