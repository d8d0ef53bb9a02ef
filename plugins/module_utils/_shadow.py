# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the promotion gate of a shadow version, judged on what the server's
shadow route reports (edgeml-serve: GET /v2/models/<model>/shadow). Standard library only."""

from __future__ import annotations


class ShadowError(Exception):
    pass


def _count(report, key):
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 53:
        raise ShadowError(f"the server's shadow report has no usable '{key}': {value!r}")
    return value


def _ms(report, key):
    section = report.get(key)
    value = section.get("p95") if isinstance(section, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e12:  # NaN fails too
        raise ShadowError(f"the server's shadow report has no usable '{key}' p95: {value!r}")
    return float(value)


def figures(report, model, candidate, serving, shadow_id=None):
    """The report's figures, checked: it must be about this candidate beside this serving version,
    and (shadow_id) this judging, not another deploy's."""
    if not isinstance(report, dict):
        raise ShadowError(f"model {model}: the server's shadow report is not a JSON object")
    for key, wanted in (("candidate_version", candidate), ("serving_version", serving), ("id", shadow_id)):
        if wanted and report.get(key) != wanted:
            raise ShadowError(f"model {model}: the server's shadow compares {report.get(key)!r} where "
                              f"{key} {wanted} was expected (another deploy changed it?)")
    requests, agreed = _count(report, "requests"), _count(report, "agreed")
    if agreed > requests:
        raise ShadowError(f"model {model}: the server's shadow report says {agreed} of {requests} agreed")
    return {"requests": requests, "agreed": agreed, "errors": _count(report, "errors"),
            "skipped": _count(report, "skipped"),
            "agreement_percent": round(100.0 * agreed / requests, 3) if requests else None,
            "candidate_p95_ms": _ms(report, "candidate_latency_ms"),
            "serving_p95_ms": _ms(report, "serving_latency_ms"),
            "last_disagreement": str(report.get("last_disagreement") or "")[:300] or None}


def judge(found, min_requests, min_agreement, latency_p95_ms=None):
    """(passed, message) once found['requests'] >= min_requests; (None, message) before."""
    if found["requests"] < min_requests:
        return None, f"{found['requests']} of the {min_requests} requests needed have been shadowed"
    problems = []
    if found["agreement_percent"] < min_agreement:
        why = f"; last difference: {found['last_disagreement']}" if found["last_disagreement"] else ""
        problems.append(f"the candidate agreed on {found['agreement_percent']} % of {found['requests']} "
                        f"requests, {min_agreement} % needed{why}")
    if latency_p95_ms is not None:
        p95 = found["candidate_p95_ms"]
        if p95 is None or p95 > latency_p95_ms:
            problems.append(f"the candidate's p95 is {p95} ms, over the budget of {latency_p95_ms} ms")
    if problems:
        return False, "; ".join(problems)
    return True, (f"the candidate agreed on {found['agreement_percent']} % of {found['requests']} requests"
                  f" (p95 {found['candidate_p95_ms']} ms, serving {found['serving_p95_ms']} ms)")
