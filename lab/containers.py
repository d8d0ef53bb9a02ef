"""Start the lab's containers: systemd edge hosts and the registries."""

import io
import tarfile
import time

import docker
import requests
import yaml

from .topology import (LABEL, NETWORKS, REGISTRY_LISTEN_PORT, REGISTRY_USER, SSH_USER, STATE, Host,
                       Registry)

# systemd in a container, without --privileged (this kernel withholds what that asks for).
SYSTEMD_OPTIONS = {
    "cap_add": ["SYS_ADMIN"],
    "security_opt": ["seccomp=unconfined"],
    "cgroupns": "host",
    "volumes": {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
    "tmpfs": {"/run": "", "/run/lock": ""},
}
# Lab names resolve through Docker's embedded DNS; any other name is sent nowhere off the lab
# (127.0.0.1 in the container) and fails within a second. Otherwise Docker forwards it to the
# machine's resolver, which may not answer for 20 s: a "cut" link would then hang, not fail.
DNS_OPTIONS = {"dns": ["127.0.0.1"], "dns_opt": ["timeout:1", "attempts:1"]}
CA_IN_HOST = "/usr/local/share/ca-certificates/edgeml-lab-ca.crt"


def ensure_networks(client, networks=None):
    for name, opts in (networks or NETWORKS).items():
        if not client.networks.list(names=[name]):
            client.networks.create(name, driver="bridge", internal=opts["internal"],
                                   labels={LABEL: "true"})


def _labels():
    # The state directory too: containers made from another checkout's lab (other CA, keys,
    # password) are replaced, not reused.
    return {LABEL: "true", f"{LABEL}.state": str(STATE)}


def _existing(client, name):
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        return None
    if container.labels.get(f"{LABEL}.state") != str(STATE):
        print(f"lab: replacing {name}, made by another checkout's lab", flush=True)
        container.remove(force=True, v=True)
        return None
    if container.status != "running":
        container.start()
    return container


def _run(client, name, image, networks, **kwargs):
    """Run a labelled container attached to its networks (none when the list is empty)."""
    first = networks[0] if networks else "none"
    container = client.containers.run(
        image, name=name, hostname=name, detach=True, network=first,
        labels=_labels(), restart_policy={"Name": "unless-stopped"}, **DNS_OPTIONS, **kwargs)
    for net in networks[1:]:
        client.networks.get(net).connect(container)
    return container


def put_file(container, path, data, mode=0o644):
    directory, _sep, filename = path.rpartition("/")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(filename)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    container.exec_run(["mkdir", "-p", directory])
    container.put_archive(directory, buf.getvalue())


def _exec(container, cmd):
    result = container.exec_run(cmd)
    if result.exit_code != 0:
        raise SystemExit(f"lab: {container.name}: {cmd!r} failed: {result.output.decode()[-500:]}")
    return result.output.decode()


def ensure_host(client, image, host: Host, ca_cert, ssh_pubkey):
    container = _existing(client, host.name)
    if container:
        return container, False
    ports = {"22/tcp": ("127.0.0.1", host.ssh_port)} if host.ssh_port else None
    container = _run(client, host.name, image, list(host.networks), ports=ports,
                     **SYSTEMD_OPTIONS)
    wait_for_boot(container)
    put_file(container, CA_IN_HOST, ca_cert.read_bytes())
    _exec(container, ["update-ca-certificates"])
    if host.ssh_port:
        _exec(container, ["useradd", "--create-home", "--shell", "/bin/bash", SSH_USER])
        put_file(container, f"/home/{SSH_USER}/.ssh/authorized_keys", ssh_pubkey, 0o600)
        _exec(container, ["chown", "-R", f"{SSH_USER}:{SSH_USER}", f"/home/{SSH_USER}/.ssh"])
        _exec(container, ["chmod", "700", f"/home/{SSH_USER}/.ssh"])
        put_file(container, f"/etc/sudoers.d/{SSH_USER}",
                 f"{SSH_USER} ALL=(ALL) NOPASSWD: ALL\n".encode(), 0o440)
    return container, True


def wait_for_boot(container, seconds=90):
    """Wait until systemd has finished booting (running, or degraded: some unit failed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = container.exec_run(["systemctl", "is-system-running"]).output.decode().strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise SystemExit(f"lab: {container.name}: systemd did not finish booting in {seconds} s")


def write_known_hosts(client, hosts):
    """known_hosts for the SSH-managed lab hosts, so host keys are checked, not trusted blindly."""
    lines = []
    for host in hosts:
        if not host.ssh_port:
            continue
        key = _exec(client.containers.get(host.name), ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
        lines.append(f"[127.0.0.1]:{host.ssh_port} {' '.join(key.split()[:2])}\n")
    path = STATE / "ssh" / "known_hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


def registry_config(registry: Registry, password):
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"},
                    "delete": {"enabled": True}},
        "http": {"addr": f":{REGISTRY_LISTEN_PORT}",
                 "tls": {"certificate": f"/etc/edgeml-registry/pki/{registry.name}.crt",
                         "key": f"/etc/edgeml-registry/pki/{registry.name}.key"}},
        "auth": {"htpasswd": {"realm": "edgeml-lab", "path": "/etc/edgeml-registry/pki/htpasswd"}},
    }
    if registry.proxy_of:
        # distribution's proxy sends its username/password only to a *token* realm; against a
        # basic-auth upstream it needs them in the URL, where Go's HTTP client uses them.
        scheme, _sep, rest = registry.proxy_of.partition("://")
        config["proxy"] = {"remoteurl": f"{scheme}://{REGISTRY_USER}:{password}@{rest}"}
        config["log"]["level"] = "warn"  # distribution 2.8 logs the remote URL at info
    return config


def ensure_registry(client, image, registry: Registry, password):
    directory = STATE / "registry" / registry.name
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    config.write_text(yaml.safe_dump(registry_config(registry, password)))
    config.chmod(0o600)
    container = _existing(client, registry.name)
    if not container:
        container = _run(
            client, registry.name, image, list(registry.networks),
            command=["/usr/local/bin/registry", "serve", "/etc/edgeml-registry/config.yml"],
            environment={"SSL_CERT_FILE": "/etc/edgeml-registry/pki/ca.crt"},
            ports={f"{REGISTRY_LISTEN_PORT}/tcp": ("127.0.0.1", registry.port)},
            volumes={
                "/usr/bin/docker-registry": {"bind": "/usr/local/bin/registry", "mode": "ro"},
                str(config): {"bind": "/etc/edgeml-registry/config.yml", "mode": "ro"},
                str(STATE / "pki"): {"bind": "/etc/edgeml-registry/pki", "mode": "ro"},
                f"edgeml-lab-{registry.name}-data": {"bind": "/var/lib/registry", "mode": "rw"},
            },
        )
    wait_for_registry(f"https://127.0.0.1:{registry.port}/v2/", STATE / "pki" / "ca.crt")
    return container


def wait_for_registry(url, ca_cert, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, verify=str(ca_cert), timeout=2).status_code in (200, 401):
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"lab: the registry at {url} did not answer within {seconds} s")
        time.sleep(0.5)
