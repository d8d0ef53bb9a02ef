"""The edge-host image: Debian bookworm with systemd, built locally with debootstrap.

No image can be pulled in the lab, so the root file system is bootstrapped from Debian's
mirror and imported. The tag carries a hash of the recipe, so the image is rebuilt only when
the recipe (this file) changes.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

SUITE = "bookworm"
MIRROR = os.environ.get("EDGEML_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "openssh-server",
            "ca-certificates", "iproute2", "sudo")
REPO = "edgeml-lab/edge-host"


def recipe_tag():
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return f"{REPO}:{digest}"


def _customise(rootfs):
    """Make the bootstrapped tree a good container image."""
    # Host keys are made per container at start, so no two lab hosts share one.
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Units that have nothing to do in a container.
    wants = rootfs / "etc" / "systemd" / "system"
    for unit in ("getty@tty1.service", "systemd-udevd.service", "systemd-udev-trigger.service",
                 "console-getty.service", "systemd-remount-fs.service"):
        link = wants / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    # Each container makes its own host keys when sshd first starts.
    dropin = wants / "ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "host-keys.conf").write_text(
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
        "ExecStartPre=/usr/sbin/sshd -t\n")
    (rootfs / "etc" / "machine-id").write_text("")
    shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (rootfs / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)


def ensure_image(client: docker.DockerClient):
    tag = recipe_tag()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    print(f"lab: building the edge-host image {tag} with debootstrap (about a minute)", flush=True)
    with tempfile.TemporaryDirectory(prefix="edgeml-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(rootfs), MIRROR],
            check=True, stdout=subprocess.DEVNULL,
        )
        _customise(rootfs)
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            subprocess.run(["docker", "import", "-c", 'CMD ["/sbin/init"]', "-", tag],
                           stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
    return tag
