"""The collection's published metadata says what is true: versions, support claims, READMEs,
changelog fragments."""

import importlib.util
import re
from pathlib import Path

import ansible
import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = Path(__file__).resolve().parents[3]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
RUNTIME = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*/*.py")
                 if p.parent.name not in ("module_utils", "doc_fragments", "action"))
ROLES = sorted(p.parent.parent for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def documentation(path):
    match = re.search(r'^DOCUMENTATION = r?"""(.*?)"""', path.read_text(), re.S | re.M)
    return yaml.safe_load(match.group(1)) if match else None


def version_added_values(doc):
    """Every version_added in a DOCUMENTATION block or an argument spec, at any depth."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "version_added":
                yield str(value)
            else:
                yield from version_added_values(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from version_added_values(item)


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_version_added_is_not_after_this_version(path):
    doc = documentation(path)
    assert doc is not None, f"{path.name} has no DOCUMENTATION"
    values = list(version_added_values(doc))
    assert values, f"{path.name} has no version_added"
    for value in values:
        assert LooseVersion(value) <= LooseVersion(GALAXY["version"]), \
            f"{path.name}: version_added {value} is after galaxy.yml's version {GALAXY['version']}"


def test_requires_ansible_is_what_the_tests_run_on():
    # The claim's lower bound is the ansible-core that sanity and every suite here run on:
    # claiming an older one would be untested.
    lower = re.fullmatch(r">=(\d+\.\d+)\.\d+", RUNTIME["requires_ansible"]).group(1)
    running = ".".join(ansible.__version__.split(".")[:2])
    assert lower == running, f"meta/runtime.yml claims >={lower}, the tests run ansible-core {running}"
    for role in ROLES:
        galaxy_info = yaml.safe_load((role / "meta" / "main.yml").read_text())["galaxy_info"]
        assert str(galaxy_info["min_ansible_version"]) == lower, role.name


def test_role_readmes_are_generated_from_the_argument_specs():
    spec = importlib.util.spec_from_file_location("role_readmes", ROOT / "hacking" / "role_readmes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for role in ROLES:
        readme = role / "README.md"
        assert readme.is_file(), f"{role.name} has no README.md (run make readmes)"
        assert readme.read_text() == module.render(role), f"{readme} is out of date (run make readmes)"


NEW_THING = re.compile(r"\bnew (module|plugin|role|playbook|lookup|filter|inventory)\b", re.I)


@pytest.mark.parametrize("path", sorted((ROOT / "changelogs" / "fragments").glob("*.yml")), ids=lambda p: p.name)
def test_changelog_fragments_do_not_announce_new_plugins(path):
    # antsibull-changelog lists new modules and plugins itself (from version_added), and new
    # roles and playbooks from "add object.*" sections; a "new module" line would repeat them.
    fragment = yaml.safe_load(path.read_text())
    for section, entries in fragment.items():
        if section.startswith("add ") or not isinstance(entries, list):
            continue
        for entry in entries:
            assert not NEW_THING.search(entry), f"{path.name} [{section}]: {entry}"
