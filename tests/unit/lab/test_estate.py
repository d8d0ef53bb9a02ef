"""The lab's estate is described once, in lab/topology.py: the sites inventories and the molecule
platforms derived from it must agree with it, and with what the lab starts."""

import pytest
import yaml
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

from lab import render, topology
from lab.topology import CORE_NET, CORE_REGISTRY, EXTRAS, HOSTS, REGISTRIES, SITES, SSH_USER


def load_inventory(directory):
    """The inventory in directory, read the way ansible.cfg enables: sites files and YAML."""
    inventory = InventoryData()
    for path in sorted(directory.glob("*.yml")):
        name = "edgeml.fleet.sites" if path.name.endswith(".sites.yml") else "ansible.builtin.yaml"
        plugin = inventory_loader.get(name)
        assert plugin.verify_file(str(path)), path
        plugin.parse(inventory, DataLoader(), str(path), cache=False)
    return inventory


def hostvars(inventory, name):
    return inventory.get_host(name).get_vars()


def test_derived_files_are_up_to_date():
    stale = [str(path.relative_to(topology.ROOT)) for path in render.stale()]
    assert not stale, f"{stale} differ from lab/topology.py: run `python -m lab render`"


def test_render_rewrites_drifted_platforms_and_keeps_the_rest(repo_root, tmp_path):
    original = (repo_root / "molecule" / "mirror" / "molecule.yml").read_text()
    drifted = tmp_path / "mirror" / "molecule.yml"
    drifted.parent.mkdir()
    drifted.write_text(original.replace("  - name: edge-m2\n", "  - name: edge-m9\n  - name: edge-a1\n"))
    assert render.molecule_config(drifted) == original


def test_lab_inventory_has_the_topologys_sites_and_hosts(repo_root):
    inventory = load_inventory(repo_root / "inventories" / "lab")
    sites = {site.name: site for site in SITES}
    assert set(inventory.hosts) == {host.name for host in HOSTS}
    assert {group.name for group in inventory.groups["sites"].child_groups} \
        == {f"site_{name.replace('-', '_')}" for name in sites}
    for host in HOSTS:
        hv = hostvars(inventory, host.name)
        site = sites[host.site]
        assert (hv["edgeml_site"], hv["edgeml_connectivity"]) == (site.name, site.connectivity)
        assert hv["edgeml_labels"] == host.labels
        if host.ssh_port:
            assert (hv["ansible_host"], hv["ansible_port"], hv["ansible_user"], hv["ansible_connection"]) \
                == ("127.0.0.1", host.ssh_port, SSH_USER, "ssh")
        else:
            assert (hv["ansible_host"], hv["ansible_connection"]) == (host.name, "community.docker.docker")


def reachable_registries(host):
    """The lab's registries that share a Docker network with host."""
    return {registry.url for registry in REGISTRIES if set(registry.networks) & set(host.networks)}


@pytest.mark.parametrize("host", HOSTS, ids=lambda host: host.name)
def test_each_host_pulls_from_registries_its_networks_reach(repo_root, host):
    """The inventory's registry endpoints are what the host's Docker networks let it reach."""
    inventory = load_inventory(repo_root / "inventories" / "lab")
    endpoints = [e["url"] for e in hostvars(inventory, host.name)["edgeml_registry_endpoints"]]
    connectivity = hostvars(inventory, host.name)["edgeml_connectivity"]
    reachable = reachable_registries(host)
    if connectivity == "disconnected":
        assert host.networks == () and endpoints == []
    elif connectivity == "connected":
        assert CORE_NET in host.networks and endpoints == [CORE_REGISTRY.url]
    else:  # intermittent: only through the site mirror, which caches the core registry
        mirror = next(r for r in REGISTRIES if r.url == endpoints[0])
        assert reachable == {mirror.url} and mirror.proxy_of == CORE_REGISTRY.url
        assert endpoints == [mirror.url, CORE_REGISTRY.url]


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_extra_inventory_has_the_extras_hosts(repo_root, name):
    extra = EXTRAS[name]
    inventory = load_inventory(topology.extra_inventory_dir(name))
    assert set(inventory.hosts) == {host.name for host in extra.gateways + extra.hosts}
    sites = {site.name: site for site in extra.sites}
    for host in extra.hosts:
        hv = hostvars(inventory, host.name)
        assert (hv["edgeml_site"], hv["edgeml_connectivity"]) \
            == (host.site, sites[host.site].connectivity)


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_gateways_serve_their_sites_mirror(repo_root, name):
    """The gateways' settings (written by hand, they configure role registry_mirror) agree with
    the topology: the site, its mirror URL, the core registry, the gateway's certificate."""
    extra = EXTRAS[name]
    inventory = load_inventory(topology.extra_inventory_dir(name))
    sites = {site.name: site for site in extra.sites}
    for gateway in extra.gateways:
        hv = hostvars(inventory, gateway.name)
        site = sites[gateway.site]
        assert (hv["edgeml_site"], hv["edgeml_connectivity"]) == (site.name, site.connectivity)
        assert site.mirror == f"https://{gateway.name}:{topology.REGISTRY_LISTEN_PORT}"
        assert hv["registry_mirror_remote_url"] == CORE_REGISTRY.url
        assert hv["registry_mirror_tls_cert_file"].endswith(f"/pki/{gateway.name}.crt")
        assert CORE_NET in gateway.networks
        assert all(set(gateway.networks) & set(host.networks) for host in extra.hosts if host.site == site.name)


def scenario_hosts(scenario_dir):
    """The hosts of the inventory a molecule scenario links, and its platforms."""
    config = yaml.safe_load((scenario_dir / "molecule.yml").read_text())
    linked = (scenario_dir / config["provisioner"]["inventory"]["links"]["hosts"]).resolve()
    return set(load_inventory(linked).hosts), [p["name"] for p in config["platforms"]]


def test_molecule_platforms_are_the_hosts_of_the_linked_inventory(repo_root):
    """molecule adds its platforms to the inventory: one the lab does not know would be a host
    without a connection."""
    configs = sorted((repo_root / "molecule").glob("*/molecule.yml"))
    assert configs
    for config in configs:
        hosts, platforms = scenario_hosts(config.parent)
        assert sorted(platforms) == sorted(hosts), config.parent.name
