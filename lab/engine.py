"""Make sure a Docker engine answers: install Debian's docker.io and start dockerd if needed."""

import shutil
import subprocess
import time

import docker

from .topology import STATE

APT_PACKAGES = {
    # binary: Debian package
    "dockerd": "docker.io",
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
}


def _ping():
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:  # pylint: disable=broad-except
        return None


def apt_install_missing():
    missing = sorted({pkg for binary, pkg in APT_PACKAGES.items() if not shutil.which(binary)
                      and not shutil.which(binary, path="/usr/sbin:/sbin")})
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise SystemExit(
            f"lab: these tools are missing and this is not a Debian-like system: {', '.join(missing)}.\n"
            "Install Docker and the CNCF distribution registry yourself (see README, 'The lab')."
        )
    print(f"lab: installing {', '.join(missing)} from Debian", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def ensure_engine():
    """Return a docker client, starting dockerd in the background when none answers."""
    apt_install_missing()
    client = _ping()
    if client:
        return client
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/sbin")
    STATE.mkdir(parents=True, exist_ok=True)
    print("lab: no Docker engine answers; starting dockerd", flush=True)
    with open(STATE / "dockerd.log", "ab") as log:
        # Detached from our session so it outlives `make`.
        subprocess.Popen([dockerd], stdout=log, stderr=log, start_new_session=True)  # pylint: disable=consider-using-with
    for _attempt in range(60):
        time.sleep(1)
        client = _ping()
        if client:
            return client
    raise SystemExit(f"lab: dockerd did not answer within 60 s; see {STATE / 'dockerd.log'}")
