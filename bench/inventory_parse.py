"""Benchmark: `ansible-inventory --list` on 10,000 hosts in 1,000 sites.

The same estate twice, in the same run: as a sites file read by edgeml.fleet.sites, and as a
static YAML inventory with the same groups and host variables (what the plugin produces,
written out by hand). Prints medians of N runs and the ratio. Goal: plugin <= 1.5x static.

    .venv/bin/python bench/inventory_parse.py [--sites 1000] [--hosts-per-site 10] [--runs 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MODES = ("connected", "intermittent", "disconnected")


def estate(n_sites, per_site):
    sites = []
    for s in range(n_sites):
        mode = MODES[s % 3]
        site = {"name": f"site-{s:04d}", "connectivity": mode,
                "vars": {"ansible_user": "edgeops"},
                "hosts": [{"name": f"edge-{s:04d}-{h:02d}", "address": f"10.{s // 250}.{s % 250}.{h + 1}",
                           "arch": "aarch64" if h % 2 else "x86_64",
                           "labels": {"line": str(h)}} for h in range(per_site)]}
        if mode == "intermittent":
            site["mirror"] = {"url": f"https://mirror-{s:04d}.example.com:5000"}
            site["maintenance_windows"] = ["Sat 02:00-04:00"]
        sites.append(site)
    return {"plugin": "edgeml.fleet.sites", "registry": {"url": "https://registry.example.com"},
            "sites": sites}


def static_inventory(data):
    """The plugin's output for `data`, written out as a plain YAML inventory."""
    core = {"url": data["registry"]["url"], "kind": "core"}
    children = {"sites": {"children": {}}}
    for site in data["sites"]:
        hosts = {}
        mirror = [{"url": site["mirror"]["url"], "kind": "mirror"}] if "mirror" in site else []
        endpoints = mirror + ([core] if site["connectivity"] != "disconnected" else [])
        windows = [{"days": ["sat"], "start": "02:00", "end": "04:00", "timezone": "UTC"}] \
            if "maintenance_windows" in site else []
        for host in site["hosts"]:
            hosts[host["name"]] = dict(
                site["vars"], ansible_host=host["address"], edgeml_site=site["name"],
                edgeml_connectivity=site["connectivity"], edgeml_arch=host["arch"],
                edgeml_accelerator="none", edgeml_labels=host["labels"],
                edgeml_maintenance_windows=windows, edgeml_registry_endpoints=endpoints)
            for group in (f"connectivity_{site['connectivity']}", f"arch_{host['arch']}",
                          "accelerator_none"):
                children.setdefault(group, {"hosts": {}})["hosts"][host["name"]] = None
        children["sites"]["children"][f"site_{site['name'].replace('-', '_')}"] = {"hosts": hosts}
    return {"all": {"children": children}}


def time_list(inventory, env):
    start = time.perf_counter()
    subprocess.run([str(ROOT / ".venv/bin/ansible-inventory"), "-i", str(inventory), "--list",
                    "--output", os.devnull], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--hosts-per-site", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    data = estate(args.sites, args.hosts_per_site)
    with tempfile.TemporaryDirectory() as tmp:
        plugin_file = Path(tmp) / "estate.sites.yml"
        static_file = Path(tmp) / "estate.yml"
        plugin_file.write_text(yaml.safe_dump(data, sort_keys=False))
        static_file.write_text(yaml.safe_dump(static_inventory(data), sort_keys=False))
        times = {"edgeml.fleet.sites": [], "static YAML": []}
        for _run in range(args.runs):  # interleaved, so drift hits both alike
            times["edgeml.fleet.sites"].append(time_list(plugin_file, env))
            times["static YAML"].append(time_list(static_file, env))
    hosts = args.sites * args.hosts_per_site
    static = statistics.median(times["static YAML"])
    print(f"ansible-inventory --list, {hosts} hosts in {args.sites} sites, median of {args.runs}")
    print(f"| {'inventory':<20} | {'median s':>9} | {'min s':>7} | {'max s':>7} | {'vs static':>9} |")
    print(f"|{'-' * 22}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 11}|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| {name:<20} | {median:>9.2f} | {min(samples):>7.2f} | {max(samples):>7.2f} | "
              f"{median / static:>8.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
