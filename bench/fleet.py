"""Benchmark: edgeml.fleet.site over the lab fleet, before and after a change, in one table.

Each scenario is `ansible-playbook edgeml.fleet.site -i <inventory>` run as `make demo` runs it
(ANSIBLE_CONFIG, EDGEML_LAB_STATE, the venv first on PATH), against the running lab:

- first deploy: the edge hosts' containers are removed and started again by the lab's own
  functions (lab/containers.py ensure_host, as `python -m lab up` starts them: systemd, the lab
  CA, edge-a1's SSH user), so every host has nothing installed. The registries, the mirror's
  cache and the published models stay as they are (not part of what is measured).
- no-op: site.yml again with nothing to do (median of --runs).
- upgrade: a new version of the fraud model (fraud-detector 1.1, which `lab up` publishes and
  signs) rolled out with `-e edgeml_fraud_ref=models/fraud-detector:1.1`, the inventory's own
  switch; then a "restore" run goes back to 1.0 (measured and shown too: a switch to a version
  the hosts still have), so the lab is left as the tests expect it.

Per run: wall seconds; controller CPU-seconds, user+sys of the whole ansible-playbook process
tree (its forks, the ssh and `docker exec` clients they run: getrusage(RUSAGE_CHILDREN) deltas
around the waited process; an ssh ControlMaster that detaches itself is not counted, nor is
the Docker daemon's or the hosts' own CPU); CPU-s per host; task results per host, counted by
a small callback (bench/fleet_count callback written to a temporary directory): one per task a
host ran, ok + changed + failed (rescued or not) + skipped + ignored + unreachable, loop items not counted
separately, meta tasks (end_host) not counted; whether the run passed (rc 0). The run's JSON
fleet report (edgeml_report_path) is kept in the --json output, and the before and after
reports of each scenario are compared with latencies, times and timestamps left out.

Before and after: --before REV (default cc0cebe, where the fast-path work started) is checked
out into a temporary git worktree with the same .venv and its own .collections link, so
edgeml.fleet.* resolves to that checkout (ANSIBLE_COLLECTIONS_PATH); each scenario runs with
REV, then with this checkout. --before-json FILE reuses the before half of an earlier --json.

Scale (--scale N): N more edge hosts, the same edge-host image and systemd container as the
lab's own, on the core network, docker connection, started with the lab's functions and listed
as a site `site-s` in an inventory the benchmark writes (the lab's sites file plus site-s,
with the lab's group_vars); removed afterwards. It is representative of a controller's cost
per host because that cost is Ansible's own per task and host (templating, forking a worker,
shipping the module, a connection round trip), the same over `docker exec` as over SSH to
a real edge device; only the host-side work (which runs on the host's CPU, not the
controller's) and the network latency differ, and latency affects wall time, not controller
CPU. First deploy and no-op are measured with all 5 + N hosts. The extrapolation to 10,000
hosts on a 16-core controller takes the measured no-op CPU-s per host (the largest no-op that passed):
CPU-hours = CPU-s/host * 10,000 / 3600; wall hours = CPU-hours / 16, assuming a CPU-bound
controller with forks enough to keep 16 cores busy.

Every scenario run holds /tmp/edgeml-lab.lock (the lab is shared), one run at a time.

    make lab-up && .venv/bin/python bench/fleet.py [--before REV | --before-json FILE | --only-after]
        [--scenarios first,noop,upgrade] [--runs 3] [--forks 10] [--scale N] [--json OUT]
"""

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCK = "/tmp/edgeml-lab.lock"
SCENARIOS = ("first", "noop", "upgrade")
TITLES = {"first": "first deploy", "noop": "no-op", "upgrade": "upgrade (fraud 1.0 -> 1.1)",
          "restore": "restore (fraud 1.1 -> 1.0)"}
UPGRADE_REF = "models/fraud-detector:1.1"
SCALE_SITE = "site-s"

# The containers are labelled with the lab's state directory as `lab up` saw it; use the same
# string so the lab does not take the benchmark's hosts for another checkout's.
STATE = Path(os.environ.get("EDGEML_LAB_STATE", ROOT / "lab" / ".state")).resolve()
os.environ["EDGEML_LAB_STATE"] = str(STATE)
sys.path.insert(0, str(ROOT))

from lab import containers, engine, image, pki  # noqa: E402  pylint: disable=wrong-import-position
from lab.topology import CORE_NET, HOSTS, Host  # noqa: E402  pylint: disable=wrong-import-position

CALLBACK = '''
import json, os
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts = {}

    def _count(self, result, kind):
        host = self.counts.setdefault(result.host.get_name(), {})
        host[kind] = host.get(kind, 0) + 1

    def v2_runner_on_ok(self, result):
        self._count(result, "changed" if result.result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._count(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["EDGEML_BENCH_COUNTS"], "w", encoding="utf-8") as out:
            json.dump({"counted": self.counts,
                       "stats": {h: stats.summarize(h) for h in sorted(stats.processed)}}, out)
'''


@contextlib.contextmanager
def lab_lock():
    """The shared lab's lock (flock(1) takes the same flock(2) lock): wait for it, hold it."""
    with open(LOCK, "a", encoding="utf-8") as handle:
        started = time.monotonic()
        fcntl.flock(handle, fcntl.LOCK_EX)
        waited = time.monotonic() - started
        if waited > 5:
            print(f"  (waited {waited:.0f} s for the lab)", flush=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def checkout(rev):
    """REV in a temporary git worktree, with this checkout's venv and its own collection link."""
    tree = Path(tempfile.mkdtemp(prefix="edgeml-bench-before-"))
    tree.rmdir()
    git("worktree", "add", "--detach", str(tree), rev)
    try:
        (tree / ".venv").symlink_to((ROOT / ".venv").resolve())
        link = tree / ".collections" / "ansible_collections" / "edgeml" / "fleet"
        link.parent.mkdir(parents=True)
        link.symlink_to("../../..")
        yield tree
    finally:
        git("worktree", "remove", "--force", str(tree))


# --- the lab's hosts ------------------------------------------------------------------------
def scale_hosts(count):
    return tuple(Host(f"edge-s{i:02d}", SCALE_SITE, (CORE_NET,)) for i in range(1, count + 1))


def fresh_hosts(hosts):
    """Remove these hosts' containers and start them again as `lab up` does: nothing installed."""
    client = engine.ensure_engine()
    tag = image.ensure_image(client)
    ca_cert = pki.ensure_ca()
    ssh_pub = pki.ensure_ssh_key().with_suffix(".pub").read_bytes()
    remove_hosts(hosts, client)
    started = time.perf_counter()
    for host in hosts:
        containers.ensure_host(client, tag, host, ca_cert, ssh_pub)
    containers.write_known_hosts(client, HOSTS)
    return time.perf_counter() - started


def remove_hosts(hosts, client=None):
    client = client or engine.ensure_engine()
    for host in hosts:
        with contextlib.suppress(Exception):
            client.containers.get(host.name).remove(force=True, v=True)


def write_inventory(directory, tree, extra_hosts):
    """The lab's sites inventory (of TREE) plus a connected site with the extra hosts."""
    lab_dir = tree / "inventories" / "lab"
    doc = yaml.safe_load((lab_dir / "lab.sites.yml").read_text())
    doc["sites"].append({
        "name": SCALE_SITE, "connectivity": "connected",
        "vars": {"ansible_connection": "community.docker.docker"},
        "hosts": [{"name": h.name, "address": h.name} for h in extra_hosts]})
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "scale.sites.yml"
    path.write_text("---\n" + yaml.safe_dump(doc, sort_keys=False))
    group_vars = directory / "group_vars"
    if group_vars.is_symlink():
        group_vars.unlink()
    group_vars.symlink_to(lab_dir / "group_vars")
    return path


# --- one run ------------------------------------------------------------------------------
def run_site(tree, inventory, work, name, forks, extra=()):
    """ansible-playbook edgeml.fleet.site as `make demo` runs it; what it cost and did."""
    report = work / f"{name}.report.json"
    counts = work / f"{name}.counts.json"
    log = work / f"{name}.log"
    for path in (report, counts):
        path.unlink(missing_ok=True)
    env = dict(os.environ,
               ANSIBLE_CONFIG=str(tree / "ansible.cfg"), EDGEML_LAB_STATE=str(STATE),
               PATH=f"{tree / '.venv' / 'bin'}:{os.environ['PATH']}",
               ANSIBLE_COLLECTIONS_PATH=str(tree / ".collections"),
               ANSIBLE_CALLBACK_PLUGINS=str(work / "callbacks"),
               ANSIBLE_CALLBACKS_ENABLED="fleet_count", EDGEML_BENCH_COUNTS=str(counts),
               ANSIBLE_FORKS=str(forks), PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    args = [str(tree / ".venv" / "bin" / "ansible-playbook"), "edgeml.fleet.site", "-i", str(inventory),
            "-e", f"edgeml_report_path={report}"]
    for item in extra:
        args += ["-e", item]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(args, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tally = json.loads(counts.read_text()) if counts.exists() else {"counted": {}, "stats": {}}
    tally["counted"].pop("localhost", None)
    hosts = sorted(tally["counted"])
    tasks = {h: sum(tally["counted"][h].values()) for h in hosts}
    result = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "rc": proc.returncode,
              "passed": proc.returncode == 0, "hosts": len(hosts),
              "cpu_s_per_host": round(cpu / max(len(hosts), 1), 3),
              "tasks_per_host": tasks, "counted": tally["counted"], "stats": tally["stats"],
              "report": json.loads(report.read_text()) if report.exists() else None}
    mark = "passed" if result["passed"] else f"FAILED rc {proc.returncode} (log: {log})"
    print(f"  {name}: {wall:.1f} s wall, {cpu:.1f} CPU-s, {len(hosts)} hosts, "
          f"tasks/host {summary(tasks)}; {mark}", flush=True)
    if not result["passed"]:
        print("\n".join(log.read_text().splitlines()[-25:]), flush=True)
    return result


def summary(tasks):
    values = sorted(tasks.values())
    if not values:
        return "-"
    low, high = values[0], values[-1]
    return f"{statistics.median(values):g}" if low == high else f"{statistics.median(values):g} ({low}-{high})"


def scenario_runs(tree, inventory, work, label, scenario, runs, forks, hosts, extra=()):
    """The runs of one scenario, each holding the lab lock; extra: more -e items for each run."""
    extra = list(extra)
    out = []
    if scenario == "first":
        with lab_lock():
            boot = fresh_hosts(hosts)
            print(f"  {len(hosts)} fresh hosts started in {boot:.0f} s", flush=True)
            out.append(dict(run_site(tree, inventory, work, f"{label}-first", forks, extra),
                            hosts_started_s=round(boot, 1)))
    elif scenario == "noop":
        for number in range(runs):
            with lab_lock():
                out.append(run_site(tree, inventory, work, f"{label}-noop-{number + 1}", forks, extra))
    elif scenario == "upgrade":
        with lab_lock():
            out.append(run_site(tree, inventory, work, f"{label}-upgrade", forks,
                                extra + [f"edgeml_fraud_ref={UPGRADE_REF}"]))
            restore = run_site(tree, inventory, work, f"{label}-restore", forks, extra)
        return {"upgrade": out, "restore": [restore]}
    return {scenario: out}


def run_half(results, tree, label, args, work, extra_hosts=()):
    """Fill RESULTS with the scenarios' runs as they finish (a crash keeps what was measured)."""
    inventory = write_inventory(work / f"inventory-{label}", tree, extra_hosts) if extra_hosts \
        else tree / "inventories" / "lab"
    hosts = HOSTS + tuple(extra_hosts)
    extra = [f"@{scale_vars(work / f'inventory-{label}', tree, args.scale_latency_ms)}"] \
        if extra_hosts and args.scale_latency_ms else []
    for scenario in args.scenarios:
        print(f"{label}: {TITLES[scenario]}" + (f" ({len(hosts)} hosts)" if extra_hosts else ""), flush=True)
        results.update(scenario_runs(tree, inventory, work, label, scenario, args.runs, args.forks, hosts,
                                     extra))


def scale_vars(directory, tree, latency_ms):
    """Extra vars for the scale run: the lab's models with a looser latency SLO. 5 + N hosts
    share the machine's cores with the controller, so the lab's SLOs (250 ms) fail under that
    load; the SLO is the hosts' CPU, not what the scale run measures."""
    doc = yaml.safe_load((tree / "inventories" / "lab" / "group_vars" / "sites.yml").read_text())
    models = [dict(m, latency_p95_ms=latency_ms) if "latency_p95_ms" in m else m
              for m in doc["edgeml_models"]]
    path = directory / "scale-vars.yml"
    path.write_text("---\n" + yaml.safe_dump({"edgeml_models": models}, sort_keys=False))
    return path


# --- reports and tables -------------------------------------------------------------------
VOLATILE = re.compile(r"latenc|_ms$|seconds|duration|time|_at$|^at$|date|generated|elapsed", re.I)


def stable(doc):
    """A report without what differs from run to run (latencies, times, timestamps)."""
    if isinstance(doc, dict):
        return {k: stable(v) for k, v in sorted(doc.items()) if not VOLATILE.search(str(k))}
    if isinstance(doc, list):
        return [stable(v) for v in doc]
    return doc


def differences(one, two, path=""):
    if isinstance(one, dict) and isinstance(two, dict):
        found = []
        for key in sorted(set(one) | set(two)):
            if key not in one or key not in two:
                found.append(f"{path}/{key}: only in {'after' if key not in one else 'before'}")
            else:
                found += differences(one[key], two[key], f"{path}/{key}")
        return found
    if isinstance(one, list) and isinstance(two, list) and len(one) == len(two):
        return [d for i, (a, b) in enumerate(zip(one, two)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if one == two else [f"{path}: {json.dumps(one)[:80]} -> {json.dumps(two)[:80]}"]


def row(runs):
    """Median over runs of wall, CPU, CPU/host; tasks/host of the median run."""
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    hosts = max(r["hosts"] for r in runs) or 1
    every, ran = [], []
    for run in runs:
        every.append(statistics.median(run["tasks_per_host"].values()))
        ran.append(statistics.median(sum(n for kind, n in counts.items() if kind != "skipped")
                                     for host, counts in run["counted"].items() if host != "localhost"))
    passed = sum(r["passed"] for r in runs)
    return {"wall": wall, "cpu": cpu, "per_host": cpu / hosts, "hosts": hosts,
            "tasks": f"{statistics.median(every):g} ({statistics.median(ran):g})",
            "passed": f"{passed}/{len(runs)}"}


def table(title, halves, names):
    labels = [label for label in ("before", "after") if halves.get(label)]
    print(f"\n{title}\n")
    print("(median over runs; tasks/host: the median host's task results, ok + changed + failed + skipped +"
          " ignored + unreachable, in brackets without skipped)\n")
    head = "| scenario | runs |"
    rule = "|---|---:|"
    for label in labels:
        head += f" {label} wall s | {label} CPU-s | {label} CPU-s/host | {label} tasks/host (not skipped) | {label} passed |"
        rule += "---:|---:|---:|---:|---:|"
    if len(labels) == 2:
        head += " wall after/before | CPU after/before |"
        rule += "---:|---:|"
    print(head)
    print(rule)
    for name in names:
        rows = {label: row(halves[label][name]) for label in labels if halves[label].get(name)}
        if not rows:
            continue
        runs = max(len(halves[label][name]) for label in rows)
        line = f"| {TITLES[name]} | {runs} |"
        for label in labels:
            r = rows.get(label)
            line += (f" {r['wall']:.1f} | {r['cpu']:.1f} | {r['per_host']:.2f} | {r['tasks']} | {r['passed']} |"
                     if r else " - | - | - | - | - |")
        if len(rows) == 2:
            line += (f" {rows['after']['wall'] / rows['before']['wall']:.2f}x |"
                     f" {rows['after']['cpu'] / rows['before']['cpu']:.2f}x |")
        print(line)


def compare_reports(halves, names):
    if not (halves.get("before") and halves.get("after")):
        return
    print("\nFleet report, after vs before (latencies, times and timestamps left out):\n")
    for name in names:
        one = [r["report"] for r in halves["before"].get(name, []) if r.get("report")]
        two = [r["report"] for r in halves["after"].get(name, []) if r.get("report")]
        if not one or not two:
            continue
        found = differences(stable(one[-1]), stable(two[-1]))
        verdict = "unchanged in content" if not found else f"{len(found)} differences: " + "; ".join(found[:8])
        print(f"- {TITLES[name]}: {verdict}")


def extrapolate(halves):
    print("\nExtrapolation to 10,000 hosts on a 16-core controller, from the measured no-op CPU-s per host"
          " (CPU-bound, forks enough to keep 16 cores busy):\n")
    print("| | from | no-op CPU-s/host | CPU-hours | wall hours (16 cores) |")
    print("|---|---|---:|---:|---:|")
    for label, runs in halves:
        measured = row(runs)
        hours = measured["per_host"] * 10000 / 3600
        print(f"| {label} | {measured['hosts']}-host no-op | {measured['per_host']:.2f} | {hours:.1f} | {hours / 16:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="cc0cebe", help="the commit to compare with (default cc0cebe)")
    parser.add_argument("--before-json", type=Path, help="take the before half from an earlier --json")
    parser.add_argument("--only-after", action="store_true", help="measure this checkout only")
    parser.add_argument("--only-before", action="store_true", help="measure --before only (the baseline)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated, of first,noop,upgrade (default all)")
    parser.add_argument("--runs", type=int, default=3, help="no-op runs (median); default 3")
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--scale", type=int, default=0, metavar="N",
                        help="also run first deploy and no-op with N extra lab hosts")
    parser.add_argument("--scale-latency-ms", type=int, default=5000, metavar="MS",
                        help="the models' latency SLO in the scale run (default 5000; 0: the lab's)")
    parser.add_argument("--skip-lab", action="store_true",
                        help="with --scale: only the scale run, not the lab's five hosts")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"--scenarios: unknown {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    data = {"date": now, "forks": args.forks, "runs": args.runs, "cpus": os.cpu_count(),
            "scenarios": args.scenarios, "lab": {}, "scale": {}, "scale_hosts": len(HOSTS) + args.scale,
            "scale_latency_ms": args.scale_latency_ms}
    before_from = None
    if args.before_json:
        old = json.loads(args.before_json.read_text())
        data["before"] = old["before"]
        if not args.skip_lab:
            data["lab"]["before"] = old["lab"].get("before", {})
        data["scale"]["before"] = old["scale"].get("before", {})
        if not args.scale:
            data["scale_hosts"] = old.get("scale_hosts", len(HOSTS))
        before_from = f"from {args.before_json} ({old['before']['commit'][:7]}, {old['date']})"

    work = Path(tempfile.mkdtemp(prefix="edgeml-bench-fleet-"))
    (work / "callbacks").mkdir()
    (work / "callbacks" / "fleet_count.py").write_text(CALLBACK)
    extra = scale_hosts(args.scale)
    plan = []
    if not args.only_after and not args.before_json:
        plan.append("before")
    if not args.only_before:
        plan.append("after")
    try:
        for label in plan:
            if label == "before":
                commit = git("rev-parse", args.before)
                ctx = checkout(commit)
            else:
                commit = git("rev-parse", "HEAD")
                ctx = contextlib.nullcontext(ROOT)
            data[label] = {"commit": commit, "rev": args.before if label == "before" else "HEAD"}
            with ctx as tree:
                if not args.skip_lab:
                    run_half(data["lab"].setdefault(label, {}), tree, label, args, work)
                if args.scale:
                    scale_args = argparse.Namespace(**{**vars(args), "scenarios": ["first", "noop"]})
                    try:
                        run_half(data["scale"].setdefault(label, {}), tree, label + "-scale", scale_args, work, extra)
                    finally:
                        with lab_lock():
                            remove_hosts(extra)
    finally:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(data, indent=1) + "\n")
            print(f"raw results: {args.json}")
    shutil.rmtree(work, ignore_errors=True)

    def describe(label):
        if label == "before" and before_from:
            return f"before: {before_from}"
        return f"{label}: {data[label]['commit'][:7]}" if label in data else ""
    names = ["first", "noop", "upgrade", "restore"]
    header = "; ".join(filter(None, (describe("before"), describe("after"))))
    if any(data["lab"].values()):
        table(f"edgeml.fleet.site on the lab ({len(HOSTS)} hosts), forks {args.forks}, {os.cpu_count()} CPUs, "
              f"no-op median of {args.runs}; {header}", data["lab"], names)
        compare_reports(data["lab"], names)
    if any(data["scale"].values()):
        slo = f", latency SLO {args.scale_latency_ms} ms in the after run" if args.scale_latency_ms else ""
        table(f"At scale: {data['scale_hosts']} hosts, forks {args.forks}{slo}; {header}", data["scale"],
              ["first", "noop"])

    def noop_runs(label):  # the largest no-op that passed (a failed one did not walk what a no-op walks)
        for half in (data["scale"], data["lab"]):
            runs = (half.get(label) or {}).get("noop")
            if runs and all(r["passed"] for r in runs):
                return runs
        return None
    sources = [(label, noop_runs(label)) for label in ("before", "after")]
    extrapolate([(label, runs) for label, runs in sources if runs])


if __name__ == "__main__":
    main()
