"""python -m lab up | down | status | render | ee"""

import argparse
import json
import sys

import docker

from . import containers, ee, engine, image, models, pki, publish, render
from .topology import (CORE_REGISTRY, EXTRAS, HOSTS, LABEL, REGISTRIES, STATE)


def up_extra(name):
    """Add a test's extra hosts to a running lab (after `up`)."""
    extra = EXTRAS[name]
    client = engine.ensure_engine()
    tag = image.ensure_image(client)
    ca_cert = pki.ensure_ca()
    for gateway in extra.gateways:
        pki.ensure_server_cert(gateway.name, [gateway.name])
    ssh_pub = pki.ensure_ssh_key().with_suffix(".pub").read_bytes()
    containers.ensure_networks(client, extra.networks)
    hosts = extra.gateways + extra.hosts
    started = [host.name for host in hosts
               if containers.ensure_host(client, tag, host, ca_cert, ssh_pub)[1]]
    print(f"lab: {name} extras up ({len(hosts)} hosts, {len(started)} started now)")


def up():
    client = engine.ensure_engine()
    tag = image.ensure_image(client)
    ca_cert = pki.ensure_ca()
    for registry in REGISTRIES:
        pki.ensure_server_cert(registry.name, [registry.name])
    password = pki.ensure_registry_password()
    ssh_pub = pki.ensure_ssh_key().with_suffix(".pub").read_bytes()
    pki.ensure_bundle_signing_key()
    pki.ensure_model_signing_key()
    containers.ensure_networks(client)
    containers.ensure_registry(client, tag, CORE_REGISTRY, password)
    for registry in REGISTRIES[1:]:
        containers.ensure_registry(client, tag, registry, password)
    started = []
    for host in HOSTS:
        _container, new = containers.ensure_host(client, tag, host, ca_cert, ssh_pub)
        if new:
            started.append(host.name)
    containers.write_known_hosts(client, HOSTS)
    samples = models.make_samples(STATE / "models")
    (STATE / "samples.json").write_text(json.dumps(
        {f"{n}/{v}": str(d) for (n, v), d in sorted(samples.items())}, indent=2) + "\n")
    (STATE / "acceptance").mkdir(exist_ok=True)
    (STATE / "acceptance" / "fraud-detector.json").write_text(
        json.dumps(models.acceptance_cases(samples), indent=1) + "\n")
    refs = publish.publish_samples(client, samples, password, ca_cert)
    (STATE / "published.json").write_text(json.dumps(refs, indent=2) + "\n")
    print(f"lab: up ({len(HOSTS)} hosts, {len(started)} started now; "
          f"{len(REGISTRIES)} registries; {len(refs)} model images)")


def down():
    client = engine.ensure_engine()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=true"}):
        container.remove(force=True, v=True)
    for volume in client.volumes.list(filters={"label": f"{LABEL}=true"}):
        volume.remove(force=True)
    for registry in REGISTRIES:
        try:
            client.volumes.get(f"edgeml-lab-{registry.name}-data").remove(force=True)
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(filters={"label": f"{LABEL}=true"}):
        network.remove()
    print("lab: down")


def status():
    client = engine.ensure_engine()
    rows = [(c.name, c.status) for c in
            client.containers.list(all=True, filters={"label": f"{LABEL}=true"})]
    for name, state in sorted(rows):
        print(f"{name:16} {state}")
    names = {name for name, state in rows if state == "running"}
    wanted = {h.name for h in HOSTS} | {r.name for r in REGISTRIES}
    return 0 if wanted <= names else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "render", "ee"))
    parser.add_argument("--with", dest="extras", action="append", default=[], choices=sorted(EXTRAS),
                        help="also start these extra hosts (after the lab itself)")
    parser.add_argument("--check", action="store_true",
                        help="render: only name the derived files that differ from the topology")
    args = parser.parse_args(argv)
    if args.command == "render":
        return render.render(check=args.check)
    if args.command == "ee":
        print(ee.build())
        return 0
    result = {"up": up, "down": down, "status": status}[args.command]() or 0
    if args.command == "up":
        for name in args.extras:
            up_extra(name)
    return result


if __name__ == "__main__":
    sys.exit(main())
