# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import html

DOCUMENTATION = r"""
name: drift_html
short_description: Render the fleet drift report as a self-contained HTML page with plots
version_added: 0.1.0
description:
  - Takes the document of P(edgeml.fleet.drift_report#filter) and returns one HTML page with no
    external resources (inline SVG, inline style, a Content-Security-Policy that allows nothing
    else). Per site and model, a bar chart of each feature's worst PSI against the threshold, and
    each host's status, traffic, worst PSI and drifted features.
  - Every value from the report (site, model, host and feature names, messages) is HTML-escaped.
options:
  _input:
    description: The fleet drift report.
    type: dict
    required: true
  threshold:
    description: The PSI threshold drawn on the charts.
    type: float
    default: 0.2
  title:
    description: The page's title.
    type: str
    default: edgeml.fleet drift report
"""

EXAMPLES = r"""
- name: Write the drift report as a web page
  run_once: true
  delegate_to: localhost
  ansible.builtin.copy:
    content: "{{ report | edgeml.fleet.drift_html(threshold=0.2) }}"
    dest: edgeml-drift.html
    mode: "0600"
"""

RETURN = r"""
_value:
  description: The page.
  type: str
"""


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}.drift{color:#b00020;font-weight:bold}
.steady{color:#1b5e20}.note{color:#666}svg{display:block;margin:.5em 0}"""


def _bars(features, threshold, width=640, row=18):
    """An inline SVG bar chart of each feature's PSI, with the threshold as a line."""
    values = [f["psi"] or 0.0 for f in features]
    top = max(values + [threshold * 1.5, 0.01])
    height = row * len(features) + 30
    label_w, plot_w = 140, width - 210  # room after the longest bar for its value
    parts = [f'<svg class="psi" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="PSI per feature">']
    for i, feature in enumerate(features):
        y = 10 + i * row
        length = plot_w * (feature["psi"] or 0.0) / top
        colour = "#b00020" if feature["drifted"] else "#1565c0"
        parts.append(f'<text x="0" y="{y + row * 0.7:.0f}" font-size="12">{html.escape(feature["feature"])}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{max(length, 1):.1f}" height="{row - 4}" fill="{colour}"/>')
        shown = "n/a" if feature["psi"] is None else f'{feature["psi"]:.3f}'
        parts.append(f'<text x="{label_w + max(length, 1) + 4:.1f}" y="{y + row * 0.7:.0f}" font-size="11">{shown}</text>')
    x = label_w + plot_w * threshold / top
    parts.append(f'<line x1="{x:.1f}" y1="5" x2="{x:.1f}" y2="{height - 15}" stroke="#555" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x + 3:.1f}" y="{height - 3}" font-size="11">threshold {threshold}</text></svg>')
    return "".join(parts)


def _ms(value):
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.2f}"


def drift_html(report, threshold=0.2, title="edgeml.fleet drift report"):
    """A self-contained HTML page of drift_report's document: per site and model, the PSI of
    each feature as a bar chart, each host's status and traffic. Every value is escaped."""
    esc = html.escape
    totals = report.get("totals") or {}
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="note">{int(totals.get("drift") or 0)} of {int(totals.get("models") or 0)} site models '
            f'drifted; {int(totals.get("measured") or 0)} of {int(totals.get("hosts") or 0)} hosts measured.</p>']
    for entry in report.get("sites", []):
        state = "drift" if entry.get("drifted") else "steady"
        body.append(f'<h2>site {esc(str(entry["site"]))} &middot; model {esc(str(entry["model"]))} &middot; '
                    f'<span class="{state}">{state}</span> &middot; {int(entry.get("requests") or 0)} requests</h2>')
        body.append(_bars(entry.get("features") or [], threshold))
        body.append("<table><tr><th>host</th><th>status</th><th>figures of</th><th>requests</th><th>worst PSI</th>"
                    "<th>drifted features</th><th>p50 / p95 ms</th><th>errors</th></tr>")
        for host in entry.get("hosts", []):
            worst = host.get("max_psi")
            when = f'result report, {host.get("reported_at")}' if host.get("source") == "result report" else "now"
            body.append(f'<tr><td>{esc(str(host.get("host")))}</td><td>{esc(str(host.get("status")))}</td>'
                        f'<td>{esc(when)}</td><td>{int(host.get("requests") or 0)}</td>'
                        f'<td>{"-" if worst is None else f"{worst:.3f}"}</td>'
                        f'<td>{esc(", ".join(map(str, host.get("drifted") or [])) or (host.get("message") or ""))}</td>'
                        f'<td>{_ms(host.get("p50_ms"))} / {_ms(host.get("p95_ms"))}</td>'
                        f'<td>{"-" if host.get("errors") is None else int(host["errors"])}</td></tr>')
        body.append("</table>")
    if report.get("unmeasured"):
        body.append("<h2>Not measured</h2><table><tr><th>host</th><th>site</th><th>why</th></tr>")
        body += [f'<tr><td>{esc(str(u["host"]))}</td><td>{esc(str(u["site"]))}</td><td>{esc(str(u["reason"]))}</td></tr>'
                 for u in report["unmeasured"]]
        body.append("</table>")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>" + "\n".join(body) + "</body></html>\n")


class FilterModule:
    def filters(self):
        return {"drift_html": drift_html}
