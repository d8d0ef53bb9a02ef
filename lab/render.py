"""Derive the files Ansible and molecule read from the lab's estate (lab/topology.py).

``python -m lab render`` writes them; ``python -m lab render --check`` only names the ones that
differ. Ansible and molecule need them on disk, so they are generated and committed.
"""

import re
import textwrap

import yaml

from .topology import CORE_REGISTRY, EXTRAS, HOSTS, ROOT, SITES, SSH_USER, extra_inventory_dir

GENERATED = "Generated from lab/topology.py by `python -m lab render`: change the estate there."
LAB_ABOUT = (f"The local lab (`make lab-up`): {len(SITES)} sites, {len(HOSTS)} edge hosts in "
             "systemd containers.")

# The lab's hosts are containers that Ansible reaches through Docker; a host with an SSH port is
# managed over real SSH instead, with the key and known_hosts that `make lab-up` writes
# (edgeml_lab_state comes from the lab inventory's group_vars).
DOCKER_VARS = {"ansible_connection": "community.docker.docker"}
SSH_VARS = {
    "ansible_ssh_private_key_file": "{{ edgeml_lab_state }}/ssh/id_ed25519",
    "ansible_ssh_common_args": "-o UserKnownHostsFile={{ edgeml_lab_state }}/ssh/known_hosts"
                               " -o StrictHostKeyChecking=yes",
}

PLATFORMS = re.compile(r"^platforms:\n(?:  - name: .*\n)*", re.MULTILINE)


def sites_inventory(about, sites, hosts):
    """A sites file (edgeml.fleet.sites inventory plugin) for these sites and their hosts."""
    data = {"plugin": "edgeml.fleet.sites", "registry": {"url": CORE_REGISTRY.url},
            "sites": [_site(site, hosts) for site in sites]}
    return "---\n" + _comment(GENERATED) + _comment(about) + _dump(data)


def _site(site, hosts):
    entry = {"name": site.name, "connectivity": site.connectivity}
    if site.mirror:
        entry["mirror"] = {"url": site.mirror}
    if site.timezone:
        entry["timezone"] = site.timezone
    if site.maintenance_windows:
        entry["maintenance_windows"] = list(site.maintenance_windows)
    entry["vars"] = dict(DOCKER_VARS, **site.vars)
    entry["hosts"] = [_host(host) for host in hosts if host.site == site.name]
    return entry


def _host(host):
    if host.ssh_port:
        entry = {"name": host.name, "address": "127.0.0.1", "port": host.ssh_port, "user": SSH_USER,
                 "connection": "ssh"}
    else:
        entry = {"name": host.name, "address": host.name}
    if host.labels:
        entry["labels"] = dict(host.labels)
    if host.ssh_port:
        entry["vars"] = dict(SSH_VARS)
    return entry


def platforms(scenario):
    """The platforms block of a molecule scenario: the hosts of the extra of the same name
    (gateways first), or else the lab's hosts."""
    extra = EXTRAS.get(scenario)
    hosts = extra.gateways + extra.hosts if extra else HOSTS
    return "platforms:\n" + "".join(f"  - name: {host.name}\n" for host in hosts)


def molecule_config(path):
    """molecule.yml at path with its platforms block derived; the rest is left as written."""
    text = path.read_text()
    block = platforms(path.parent.name)
    return PLATFORMS.sub(lambda match: block, text, count=1)


def rendered():
    """{path: text} of every file derived from the estate."""
    files = {ROOT / "inventories" / "lab" / "lab.sites.yml": sites_inventory(LAB_ABOUT, SITES, HOSTS)}
    for name, extra in EXTRAS.items():
        path = extra_inventory_dir(name) / f"{name}.sites.yml"
        files[path] = sites_inventory(extra.about, extra.sites, extra.hosts)
    for path in sorted(ROOT.glob("molecule/*/molecule.yml")):
        files[path] = molecule_config(path)
    return files


def stale(files=None):
    """The derived files whose text differs from what the estate gives."""
    return [path for path, text in (files or rendered()).items()
            if not path.exists() or path.read_text() != text]


def render(check=False):
    """Write the derived files that differ; with check, only name them and return 1 if any."""
    files = rendered()
    paths = stale(files)
    for path in paths:
        if check:
            print(f"lab: {path.relative_to(ROOT)} differs from lab/topology.py")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path])
            print(f"lab: wrote {path.relative_to(ROOT)}")
    if check and paths:
        print("lab: run `python -m lab render` and commit the result")
        return 1
    return 0


def _comment(text):
    return textwrap.fill(text, 98, initial_indent="# ", subsequent_indent="# ") + "\n"


class _Dumper(yaml.SafeDumper):
    """Indents lists inside mappings, as the repository's hand-written YAML does."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _dump(data):
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=160, default_flow_style=False)
