"""A real execution environment image for the lab: what an automation controller runs our
playbooks in. Base images cannot be pulled here, so it starts from the lab's own debootstrap
image (Debian bookworm; it has python3-venv, openssh-client and tar) and adds, from wheels
downloaded on the controller: ansible-core, ansible-runner, the Python packages
meta/ee-requirements.txt names, and the collection itself from the tarball `make build` makes.
The system packages meta/ee-bindep.txt names are checked with bindep in the build.

python -m lab ee  builds it as edgeml-lab/ee:<hash of its inputs>; `make ee` then runs the test
that drives edgeml.fleet.site against the lab from inside it with ansible-runner.
"""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import docker

from . import engine, image

ROOT = Path(__file__).resolve().parents[1]
REPO = "edgeml-lab/ee"
WORK = ROOT / "build" / "ee"
COLLECTIONS = "/usr/share/ansible/collections"


def _pins():
    """ansible-core and ansible-runner as the controller's requirements.txt pins them."""
    text = (ROOT / "requirements.txt").read_text()
    return [m.group(0) for m in re.finditer(r"(?m)^(ansible-core|ansible-runner)==\S+", text)]


def _tarball():
    version = re.search(r"(?m)^version: *(\S+)", (ROOT / "galaxy.yml").read_text()).group(1)
    tarball = ROOT / "build" / f"edgeml-fleet-{version}.tar.gz"
    subprocess.run([str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "build", "--force",
                    "--output-path", str(tarball.parent), str(ROOT)], check=True, stdout=subprocess.DEVNULL)
    return tarball


def image_tag():
    """The tag of the image for the collection as it is now (its tarball's inputs, the pins)."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    digest = hashlib.sha256(Path(__file__).read_bytes() + "\n".join(_pins()).encode())
    for name in sorted(files.decode().split("\0")):
        path = ROOT / name
        if name and path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return f"{REPO}:{digest.hexdigest()[:12]}"


DOCKERFILE = """\
FROM {base}
COPY wheels /tmp/ee/wheels
COPY requirements.txt ee-bindep.txt {tarball} /tmp/ee/
RUN python3 -I -m venv /opt/ee \\
 && /opt/ee/bin/pip install --quiet --no-index --find-links /tmp/ee/wheels -r /tmp/ee/requirements.txt \\
 && /opt/ee/bin/bindep -b -f /tmp/ee/ee-bindep.txt
RUN /opt/ee/bin/ansible-galaxy collection install --offline -p {collections} /tmp/ee/{tarball} \\
 && rm -rf /tmp/ee && mkdir -p /runner
ENV PATH=/opt/ee/bin:/usr/local/bin:/usr/bin:/bin ANSIBLE_COLLECTIONS_PATH={collections}
WORKDIR /runner
CMD ["ansible-runner", "--help"]
"""


def build():
    client = engine.ensure_engine()
    tag = image_tag()
    try:
        client.images.get(tag)
        print(f"lab: execution environment {tag} is built")
        return tag
    except docker.errors.ImageNotFound:
        pass
    base = image.ensure_image(client)
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "wheels").mkdir(parents=True)
    requirements = _pins() + ["bindep"] + [
        line.split("#")[0].strip() for line in (ROOT / "meta" / "ee-requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()]
    (WORK / "requirements.txt").write_text("\n".join(requirements) + "\n")
    shutil.copy(ROOT / "meta" / "ee-bindep.txt", WORK / "ee-bindep.txt")
    print(f"lab: downloading the execution environment's wheels ({', '.join(requirements)})", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--only-binary=:all:", "-d", str(WORK / "wheels"), "-r", str(WORK / "requirements.txt")],
                   check=True)
    tarball = _tarball()
    shutil.copy(tarball, WORK / tarball.name)
    (WORK / "Dockerfile").write_text(DOCKERFILE.format(base=base, tarball=tarball.name, collections=COLLECTIONS))
    print(f"lab: building the execution environment {tag}", flush=True)
    subprocess.run(["docker", "build", "--quiet", "--network", "none", "-t", tag, str(WORK)], check=True,
                   stdout=subprocess.DEVNULL)
    return tag
