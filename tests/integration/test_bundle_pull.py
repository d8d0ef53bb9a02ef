"""Pull mode's transport against a real registry (CNCF distribution, TLS, htpasswd): bundle_push
publishes a signed bundle as an OCI artifact, bundle_pull fetches and verifies it. A hostile
registry (altered bundle, corrupt blob, crafted names, oversized artifact, another kind of
artifact) gets a clear failure and leaves the host's bundle exactly as it was."""

import datetime
import hashlib
import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from modules import run_module
from registries import FlakyLink
from synthetic_bundle import make_host_bundle, sign_bundle

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle

REPO = "bundles/site-c"
ROOT = Path(__file__).resolve().parents[2]


def tree(path):
    """{relative name: sha256} of every file under path (nothing when it does not exist)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(name="keys", scope="module")
def fixture_keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    key = base / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet", "-f", str(key)],
                   check=True)
    allowed = base / "allowed_signers"
    allowed.write_text("fleet@example.com " + (base / "signing_key.pub").read_text())
    return key, allowed


BUILT = itertools.count()


def signed_bundle(path, key, extra=None, hosts=("edge-c1",), created=None):
    """A signed bundle for hosts, built (manifest.json's created) after every one before it."""
    make_host_bundle(path, hosts=hosts)
    for rel, data in (extra or {}).items():
        (path / rel).write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    n = next(BUILT)
    manifest["created"] = created or f"2026-11-27T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
    (path / "manifest.json").write_text(json.dumps(manifest))
    _bundle.write_sums(path, _bundle.hash_files(path))
    sign_bundle(path, key)
    return path


def push(registry, path, repo=REPO, check_mode=False, **extra):
    return run_module("bundle_push", registry.args(registry=registry.url, repository=repo,
                                                   path=str(path), **extra), check_mode=check_mode)


def pull(registry, dest, allowed, repo=REPO, check_mode=False, url=None, **extra):
    return run_module("bundle_pull", registry.args(**dict(
        {"registry": url or registry.url, "repository": repo, "dest": str(dest),
         "allowed_signers": str(allowed), "host": "edge-c1"}, **extra)), check_mode=check_mode)


def put_manifest(registry, repo, doc, tag="latest"):
    body = json.dumps(doc).encode()
    resp = requests.put(f"{registry.url}/v2/{repo}/manifests/{tag}", data=body, verify=registry.ca,
                        auth=(registry.args()["username"], registry.password), timeout=10,
                        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status_code == 201, resp.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


def get_manifest(registry, repo, tag="latest"):  # tag: or digest
    resp = requests.get(f"{registry.url}/v2/{repo}/manifests/{tag}", verify=registry.ca, timeout=10,
                        auth=(registry.args()["username"], registry.password),
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    return resp.json()


def test_a_published_bundle_is_pulled_verified_and_then_costs_nothing(registry, keys, tmp_path):
    key, allowed = keys
    bundle = signed_bundle(tmp_path / "bundle", key)
    assert push(registry, bundle, repo="bundles/first", check_mode=True)["changed"]
    first = push(registry, bundle, repo="bundles/first")
    assert first["changed"] and first["bytes_sent"] > 0, first
    again = push(registry, bundle, repo="bundles/first")
    assert not again["changed"] and again["bytes_sent"] == 0 and again["digest"] == first["digest"]

    dest = tmp_path / "host" / "bundle"
    assert pull(registry, dest, allowed, repo="bundles/first", check_mode=True)["changed"]
    assert not dest.exists()
    got = pull(registry, dest, allowed, repo="bundles/first")
    assert got["changed"] and got["digest"] == first["digest"] and got["signer"] == "fleet@example.com", got
    assert tree(dest) == tree(bundle)
    assert (dest / "bootstrap.sh").stat().st_mode & 0o777 == 0o600  # run with sh, never executed in place
    assert json.loads((tmp_path / "host" / "bundle.digest").read_text())["digest"] == first["digest"]
    link = FlakyLink(registry.port)
    try:
        quiet = pull(registry, dest, allowed, repo="bundles/first", url=link.url)
    finally:
        link.close()
    assert not quiet["changed"] and quiet["bytes_fetched"] == 0 and quiet["digest"] == first["digest"]
    assert link.connections <= 2, link.connections  # one HEAD (after the 401 asking for credentials)

    # The next bundle: only what changed crosses the link.
    news = b"a new model blob" * 1000
    signed_bundle(tmp_path / "bundle2", key, extra={"extra.bin": news})
    second = push(registry, tmp_path / "bundle2", repo="bundles/first")
    assert second["changed"] and second["bytes_sent"] < len(news) + 4096, second
    moved = pull(registry, dest, allowed, repo="bundles/first")
    assert moved["changed"] and moved["previous"] == first["digest"], moved
    assert len(news) <= moved["bytes_fetched"] < len(news) + 4096, moved
    assert tree(dest) == tree(tmp_path / "bundle2")
    assert not (tmp_path / "host" / "bundle.new").exists() and not (tmp_path / "host" / "bundle.old").exists()


def test_an_altered_bundle_is_refused_and_the_old_one_kept(registry, keys, tmp_path):
    key, allowed = keys
    good = signed_bundle(tmp_path / "good", key)
    push(registry, good, repo="bundles/altered")
    dest = tmp_path / "host" / "bundle"
    assert pull(registry, dest, allowed, repo="bundles/altered")["changed"]
    before = tree(dest)

    # The registry (or whoever can push) swaps in a model blob of its own; the manifest is
    # consistent, the signature over SHA256SUMS is not.
    bad = signed_bundle(tmp_path / "bad", key)
    (bad / "images" / "oci-layout").write_text('{"imageLayoutVersion": "6.6.6"}')
    push(registry, bad, repo="bundles/altered")
    refused = pull(registry, dest, allowed, repo="bundles/altered")
    assert refused["failed"] and "refused" in refused["msg"] and "checksum mismatch" in refused["msg"], refused
    assert "images/oci-layout" in refused["msg"]
    assert tree(dest) == before
    assert not (tmp_path / "host" / "bundle.new").exists()
    # Remembered: the next run fails at once, with the reason, fetching nothing.
    again = pull(registry, dest, allowed, repo="bundles/altered")
    assert again["failed"] and "refused earlier" in again["msg"] and again["bytes_fetched"] == 0, again

    # A bundle signed by a key the host does not trust is refused the same way.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    push(registry, signed_bundle(tmp_path / "foreign", other), repo="bundles/altered")
    foreign = pull(registry, dest, allowed, repo="bundles/altered")
    assert foreign["failed"] and "not made by a key in" in foreign["msg"], foreign
    assert tree(dest) == before


def test_an_older_bundle_or_one_for_another_host_is_never_put_in_place(registry, keys, tmp_path):
    key, allowed = keys
    dest = tmp_path / "host" / "bundle"
    old = push(registry, signed_bundle(tmp_path / "v1", key, extra={"v": b"1"}), repo="bundles/rollback")
    assert pull(registry, dest, allowed, repo="bundles/rollback")["changed"]
    push(registry, signed_bundle(tmp_path / "v2", key, extra={"v": b"2"}), repo="bundles/rollback")
    assert pull(registry, dest, allowed, repo="bundles/rollback")["changed"]
    before = tree(dest)
    # Whoever can move the tag points it back at the old (validly signed) bundle.
    put_manifest(registry, "bundles/rollback", get_manifest(registry, "bundles/rollback", old["digest"]))
    back = pull(registry, dest, allowed, repo="bundles/rollback")
    assert back["failed"] and "an old bundle is never put back" in back["msg"], back
    assert tree(dest) == before
    # The guard rests on the bundle in place, not on the record next to it: lost, or after a
    # crash between the swap's two renames, the old bundle is still refused.
    (tmp_path / "host" / "bundle.digest").unlink()
    dest.rename(tmp_path / "host" / "bundle.old")
    lost = pull(registry, dest, allowed, repo="bundles/rollback")
    assert lost["failed"] and "an old bundle is never put back" in lost["msg"], lost
    assert tree(dest) == before
    # A bundle signed for another host (another site's) is refused too, before it replaces ours.
    push(registry, signed_bundle(tmp_path / "other", key, hosts=("edge-b1",)), repo="bundles/rollback")
    other = pull(registry, dest, allowed, repo="bundles/rollback")
    assert other["failed"] and "the bundle is for edge-b1 (sites site-c), not edge-c1" in other["msg"], other
    assert tree(dest) == before


def test_refused_bundles_leave_no_downloads_behind(registry, keys, tmp_path):
    key, allowed = keys
    dest = tmp_path / "host" / "bundle"
    push(registry, signed_bundle(tmp_path / "good", key), repo="bundles/junk")
    assert pull(registry, dest, allowed, repo="bundles/junk")["changed"]
    cache = tmp_path / "host" / "bundle.blobs"
    kept = sorted(p.name for p in cache.iterdir())
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    for n in range(3):  # each time new junk, signed by a key the host does not trust
        push(registry, signed_bundle(tmp_path / f"junk{n}", other, extra={"junk": os.urandom(200_000)}),
             repo="bundles/junk")
        refused = pull(registry, dest, allowed, repo="bundles/junk")
        assert refused["failed"] and refused["bytes_fetched"] >= 200_000, refused
        assert sorted(p.name for p in cache.iterdir()) == kept
    assert len(json.loads((tmp_path / "host" / "bundle.refused").read_text())) == 3


def test_a_missing_signers_file_or_a_damaged_cache_is_not_held_against_a_good_bundle(registry, keys, tmp_path):
    key, allowed = keys
    dest = tmp_path / "host" / "bundle"
    push(registry, signed_bundle(tmp_path / "v1", key, extra={"model": os.urandom(50_000)}), repo="bundles/cache")
    missing = pull(registry, dest, tmp_path / "not-yet", repo="bundles/cache")
    assert missing["failed"] and "no such file" in missing["msg"] and not dest.exists(), missing
    assert pull(registry, dest, allowed, repo="bundles/cache")["changed"]
    # A cache entry damaged on the disk (or planted as a link) is hashed again and fetched anew.
    cache = tmp_path / "host" / "bundle.blobs"
    entries = sorted(cache.iterdir(), key=lambda p: p.stat().st_size)
    entries[-1].write_bytes(b"rot" * 1000)
    entries[-2].unlink()
    entries[-2].symlink_to("/etc/hostname")
    push(registry, signed_bundle(tmp_path / "v2", key, extra={"model": (tmp_path / "v1" / "model").read_bytes()}),
         repo="bundles/cache")
    got = pull(registry, dest, allowed, repo="bundles/cache")
    assert got["changed"] and tree(dest) == tree(tmp_path / "v2"), got
    assert not any(p.is_symlink() for p in cache.iterdir())


def test_a_parent_directory_others_may_write_is_refused(registry, keys, tmp_path):
    key, allowed = keys
    push(registry, signed_bundle(tmp_path / "b", key), repo="bundles/parent")
    parent = tmp_path / "shared"
    parent.mkdir(mode=0o777)
    parent.chmod(0o777)
    got = pull(registry, parent / "bundle", allowed, repo="bundles/parent")
    assert got["failed"] and "group and others cannot write" in got["msg"], got
    assert not list(parent.iterdir())


def test_refusals_hold_for_the_signers_they_were_made_with_and_time_is_checked(registry, keys, tmp_path):
    key, allowed = keys
    dest = tmp_path / "host" / "bundle"
    v1 = signed_bundle(tmp_path / "v1", key)
    push(registry, v1, repo="bundles/signers")
    empty = tmp_path / "empty_signers"
    empty.write_text("")
    refused = pull(registry, dest, empty, repo="bundles/signers")
    assert refused["failed"] and "not made by a key in" in refused["msg"], refused
    assert pull(registry, dest, allowed, repo="bundles/signers")["changed"]  # the right signers now
    # The same bundle re-signed with a new key (a key rotation): same build time, same content.
    new_key = tmp_path / "new_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "new", "-f", str(new_key)], check=True)
    both = tmp_path / "both_signers"
    both.write_text(allowed.read_text() + "new@example.com " + (tmp_path / "new_key.pub").read_text())
    (v1 / "SHA256SUMS.sig").unlink()
    sign_bundle(v1, new_key)
    push(registry, v1, repo="bundles/signers")
    rotated = pull(registry, dest, both, repo="bundles/signers")
    assert rotated["changed"] and rotated["signer"] == "new@example.com", rotated
    # A build time in another format, or far ahead of this host's clock, is refused.
    push(registry, signed_bundle(tmp_path / "offset", key, created="2026-11-28T01:00:00+05:00"), repo="bundles/signers")
    offset = pull(registry, dest, both, repo="bundles/signers")
    assert offset["failed"] and "is not YYYY-MM-DDTHH:MM:SSZ" in offset["msg"], offset
    push(registry, signed_bundle(tmp_path / "future", key, created="2099-01-01T00:00:00Z"), repo="bundles/signers")
    future = pull(registry, dest, both, repo="bundles/signers")
    assert future["failed"] and "more than a day ahead of this host's clock" in future["msg"], future
    again = pull(registry, dest, both, repo="bundles/signers")  # not remembered: the clock may be wrong
    assert again["failed"] and "refused earlier" not in again["msg"], again


def test_odd_cache_entries_and_a_bad_blob_cost_no_more_than_they_must(registry, keys, tmp_path):
    key, allowed = keys
    dest = tmp_path / "host" / "bundle"
    model = os.urandom(300_000)
    bundle = signed_bundle(tmp_path / "b", key, extra={"model": model, "only-here.bin": os.urandom(5000)})
    push(registry, bundle, repo="bundles/odd")
    layers = {e["annotations"]["org.opencontainers.image.title"]: e for e in get_manifest(registry, "bundles/odd")["layers"]}
    cache = tmp_path / "host" / "bundle.blobs"
    cache.mkdir(parents=True, mode=0o700)
    os.mkfifo(cache / layers["model"]["digest"][7:])  # would hang a reader that blocks
    (cache / layers["bootstrap.sh"]["digest"][7:]).mkdir()  # a stray directory
    data = registry.blob_data_path(layers["only-here.bin"]["digest"])
    good = data.read_bytes()
    data.write_bytes(b"x" * len(good))
    bad = pull(registry, dest, allowed, repo="bundles/odd")
    assert bad["failed"] and "failed verification" in bad["msg"], bad
    # What did verify stays for the next run: only the bad blob is fetched again.
    assert (cache / layers["model"]["digest"][7:]).is_file()
    data.write_bytes(good)
    got = pull(registry, dest, allowed, repo="bundles/odd")
    assert got["changed"] and tree(dest) == tree(bundle), got
    assert got["bytes_fetched"] < 100_000, got


def test_a_corrupt_blob_in_the_registry_fails_and_changes_nothing(registry, keys, tmp_path):
    key, allowed = keys
    # A file of its own: blobs are shared across the registry, and other tests pull the rest.
    bundle = signed_bundle(tmp_path / "bundle", key, extra={"only-here.bin": os.urandom(5000)})
    pushed = push(registry, bundle, repo="bundles/corrupt")
    layer = next(entry for entry in get_manifest(registry, "bundles/corrupt")["layers"]
                 if entry["annotations"]["org.opencontainers.image.title"] == "only-here.bin")
    data = registry.blob_data_path(layer["digest"])
    data.write_bytes(b"#!/bin/sh\nrm -rf /\n".ljust(layer["size"], b"#"))
    dest = tmp_path / "host" / "bundle"
    got = pull(registry, dest, allowed, repo="bundles/corrupt")
    assert got["failed"] and "failed verification" in got["msg"] and pushed["digest"] not in str(got.get("digest")), got
    assert not dest.exists() and not (tmp_path / "host" / "bundle.new").exists()
    # Nothing half-written is kept as if it were the blob.
    assert not list((tmp_path / "host" / "bundle.blobs").glob(layer["digest"][7:] + "*"))


@pytest.mark.parametrize("title", ["../escape", "/etc/passwd", "a/../../escape", "", ".", "a/..",
                                   "a//b", "dir/", "we\u0301ird", "a\nb", "SHA256SUMS\n", "x" * 300,
                                   "/".join(["y" * 200] * 6)])
def test_crafted_file_names_are_refused_before_anything_is_fetched(registry, keys, tmp_path, title):
    key, allowed = keys
    bundle = signed_bundle(tmp_path / "bundle", key)
    push(registry, bundle, repo="bundles/names")
    doc = get_manifest(registry, "bundles/names")
    doc["layers"][0]["annotations"]["org.opencontainers.image.title"] = title
    put_manifest(registry, "bundles/names", doc)
    dest = tmp_path / "host" / "bundle"
    before = {str(p) for p in tmp_path.rglob("*")}
    got = pull(registry, dest, allowed, repo="bundles/names")
    assert got["failed"] and "not a plain relative path" in got["msg"], got
    assert {str(p) for p in tmp_path.rglob("*")} - before <= {str(tmp_path / "host"), str(dest) + ".lock"}


@pytest.mark.parametrize("clash", ["twice", "file-and-dir"])
def test_a_name_twice_or_a_file_that_is_also_a_directory_is_refused(registry, keys, tmp_path, clash):
    key, allowed = keys
    push(registry, signed_bundle(tmp_path / "bundle", key), repo="bundles/clash")
    doc = get_manifest(registry, "bundles/clash")
    first = doc["layers"][0]["annotations"]["org.opencontainers.image.title"]
    copy = json.loads(json.dumps(doc["layers"][0]))
    copy["annotations"]["org.opencontainers.image.title"] = first if clash == "twice" else first + "/x"
    doc["layers"].append(copy)
    put_manifest(registry, "bundles/clash", doc)
    got = pull(registry, tmp_path / "host" / "bundle", allowed, repo="bundles/clash")
    assert got["failed"] and "named twice, or as both a file and a directory" in got["msg"], got
    assert not (tmp_path / "host" / "bundle").exists()


def test_an_artifact_over_the_size_limit_is_refused_before_any_download(registry, keys, tmp_path):
    key, allowed = keys
    push(registry, signed_bundle(tmp_path / "bundle", key), repo="bundles/big")
    got = pull(registry, tmp_path / "host" / "bundle", allowed, repo="bundles/big", max_bytes=1000)
    assert got["failed"] and "more than 1000 bytes" in got["msg"] and got["bytes_fetched"] == 0, got
    assert not (tmp_path / "host" / "bundle.blobs").exists() or not any((tmp_path / "host" / "bundle.blobs").iterdir())


def test_another_kind_of_artifact_is_not_taken_for_a_bundle(registry, keys, tmp_path):
    key, allowed = keys
    push(registry, signed_bundle(tmp_path / "report", key), repo="bundles/report",
         artifact_type="application/vnd.edgeml.report.v1")
    got = pull(registry, tmp_path / "host" / "bundle", allowed, repo="bundles/report")
    assert got["failed"] and "is not an application/vnd.edgeml.bundle.v1 artifact" in got["msg"], got
    assert not (tmp_path / "host" / "bundle").exists()


def test_a_download_cut_off_resumes_at_the_next_run(registry, keys, tmp_path):
    key, allowed = keys
    bundle = signed_bundle(tmp_path / "bundle", key,
                           extra={"large.bin": bytes(range(256)) * 4096})  # 1 MiB
    push(registry, bundle, repo="bundles/resume")
    dest = tmp_path / "host" / "bundle"
    link = FlakyLink(registry.port, cut_after=300_000)
    try:
        cut = pull(registry, dest, allowed, repo="bundles/resume", retries=0,
                   url=f"https://127.0.0.1:{link.port}", ca_path=registry.ca)
    finally:
        link.close()
    assert cut["failed"] and not dest.exists(), cut
    partial = list((tmp_path / "host" / "bundle.blobs").glob("*.partial"))
    assert partial and partial[0].stat().st_size > 0
    done = pull(registry, dest, allowed, repo="bundles/resume")
    assert done["changed"] and tree(dest) == tree(bundle), done
    assert done["bytes_fetched"] < len(bytes(range(256)) * 4096), done


def report_dir(path, host, text=None):
    path.mkdir(parents=True)
    (path / f"{host}.json").write_text(text or json.dumps({"host": host, "models": []}))
    return path


def collect(registry, dest, hosts, check_mode=False):
    return run_module("report_pull", registry.args(registry=registry.url, hosts=hosts, dest=str(dest),
                                                   repository_prefix="reports-test"),
                      check_mode=check_mode)


def collect_from(registry, dest, hosts, prefix):
    return run_module("report_pull", registry.args(registry=registry.url, hosts=hosts, dest=str(dest),
                                                   repository_prefix=prefix))


def push_report(registry, path, host):
    return push(registry, path, repo=f"reports-test/{host}", artifact_type="application/vnd.edgeml.report.v1")


def test_reports_come_home_through_the_registry(registry, keys, tmp_path):
    key, _allowed = keys
    assert push_report(registry, report_dir(tmp_path / "r1", "edge-p1"), "edge-p1")["changed"]
    dest = tmp_path / "results"
    assert collect(registry, dest, ["edge-p1"], check_mode=True)["changed"] and not dest.exists()
    got = collect(registry, dest, ["edge-p1", "edge-p9"])
    assert got["changed"] and got["missing"] == ["edge-p9"] and not got["refused"], got
    assert json.loads((dest / "edge-p1.json").read_text())["host"] == "edge-p1"
    assert not collect(registry, dest, ["edge-p1"])["changed"]
    push_report(registry, report_dir(tmp_path / "r2", "edge-p1", '{"host": "edge-p1", "models": [1]}'), "edge-p1")
    assert collect(registry, dest, ["edge-p1"])["changed"]
    assert json.loads((dest / "edge-p1.json").read_text())["models"] == [1]

    # A host that pushes a report under another host's name, two files, or a bundle: left out.
    report_dir(tmp_path / "r3", "edge-p1")
    push_report(registry, tmp_path / "r3", "edge-p2")
    r4 = report_dir(tmp_path / "r4", "edge-p3")
    (r4 / "extra.json").write_text("{}")
    push_report(registry, r4, "edge-p3")
    push(registry, signed_bundle(tmp_path / "b", key), repo="reports-test/edge-p4")
    before = tree(dest)
    bad = collect(registry, dest, ["edge-p2", "edge-p3", "edge-p4", "../edge-p1"])
    refused = {entry["host"]: entry["msg"] for entry in bad["refused"]}
    assert "holds one file, edge-p2.json; this one holds edge-p1.json" in refused["edge-p2"], bad
    assert "holds one file, edge-p3.json" in refused["edge-p3"]
    assert "is not an application/vnd.edgeml.report.v1 artifact" in refused["edge-p4"]
    assert "not a valid repository name" in refused["../edge-p1"]
    assert tree(dest) == before


def test_a_host_s_scoped_account_reads_its_bundle_and_writes_only_its_own_report(token_registry, keys, tmp_path):
    """A token service grants a pull-mode host's account pull on its site's bundle and push on its
    own report repository, nothing more; the registry enforces it."""
    key, allowed = keys
    token_registry.issuer.accounts["edge-p1"] = "p1-secret"
    token_registry.issuer.grants["edge-p1"] = {"bundles/site-p": {"pull"}, "reports/edge-p1": {"pull", "push"}}
    bundle = signed_bundle(tmp_path / "b", key, hosts=("edge-p1",))
    assert push(token_registry, bundle, repo="bundles/site-p")["changed"]  # the controller's account
    host = dict(token_registry.args(registry=token_registry.url), username="edge-p1", password="p1-secret")
    pulled = run_module("bundle_pull", dict(host, repository="bundles/site-p", dest=str(tmp_path / "host" / "bundle"),
                                            host="edge-p1", allowed_signers=str(allowed)))
    assert pulled["changed"], pulled
    report = dict(host, path=str(report_dir(tmp_path / "r", "edge-p1")), artifact_type="application/vnd.edgeml.report.v1")
    assert run_module("bundle_push", dict(report, repository="reports/edge-p1"))["changed"]
    for repo in ("reports/edge-p2", "bundles/site-p"):
        denied = run_module("bundle_push", dict(report, repository=repo))
        assert denied.get("failed") and "unauthorized" in denied["msg"], (repo, denied)
    # The tag still names the controller's bundle: the host's next check finds nothing new.
    again = run_module("bundle_pull", dict(host, repository="bundles/site-p", dest=str(tmp_path / "host" / "bundle"),
                                           host="edge-p1", allowed_signers=str(allowed)))
    assert not again["changed"] and again["digest"] == pulled["digest"], again
    missing = collect_from(token_registry, tmp_path / "results", ["edge-p2"], prefix="reports")
    assert missing["missing"] == ["edge-p2"], missing


def test_a_site_s_published_bundle_reaches_a_pull_mode_host_intact(playbook, tmp_path):
    """publish_bundle on the lab: site-c's real bundle built, signed with the lab's bundle key and
    pushed to the lab registry; what a host pulls passes bootstrap.sh's own verification."""
    state = ROOT / "lab" / ".state"
    built = tmp_path / "site-c"
    run = playbook("edgeml.fleet.publish_bundle", "-e", "offline_bundle_target=site_site_c",
                   "-e", f"offline_bundle_dir={built}", "-e", "edgeml_pull_repository=bundles/test-site-c")
    assert run.rc == 0, run.failure("localhost")
    lab = {"registry": "https://127.0.0.1:5000", "username": "edgeml",
           "password": (state / "registry-password").read_text().strip(), "ca_path": str(state / "pki" / "ca.crt")}
    dest = tmp_path / "host" / "bundle"
    pulled = run_module("bundle_pull", dict(lab, repository="bundles/test-site-c", dest=str(dest), host="edge-c1",
                                            allowed_signers=str(state / "bundle" / "allowed_signers")))
    assert pulled["changed"] and pulled["signer"] == "bundles@edgeml-lab", pulled
    assert tree(dest) == tree(built)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    checked = subprocess.run(["sh", str(dest / "bootstrap.sh"), "--check", "--host", "edge-c1",
                              "--allowed-signers", str(state / "bundle" / "allowed_signers")],
                             capture_output=True, text=True, check=False,
                             env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp)})
    assert checked.returncode == 0 and "every file checks out" in checked.stdout, checked.stderr
    # Nothing new: the host's check is one HEAD request and fetches nothing.
    quiet = run_module("bundle_pull", dict(lab, repository="bundles/test-site-c", dest=str(dest), host="edge-c1",
                                           allowed_signers=str(state / "bundle" / "allowed_signers")))
    assert not quiet["changed"] and quiet["bytes_fetched"] == 0, quiet


def test_the_host_playbook_waits_for_its_download_window_then_fetches_and_reports(playbook, registry, keys, tmp_path):
    """playbooks/pull.yml, as the edgeml-pull timer runs it, with its paths moved into tmp_path."""
    key, allowed = keys
    push(registry, signed_bundle(tmp_path / "b", key), repo="bundles/site-w")
    (tmp_path / "credentials.yml").write_text(
        f"edgeml_pull_username: {registry.args()['username']}\nedgeml_pull_password: {registry.password}\n")
    applied = tmp_path / "applied"
    applied.mkdir()
    (applied / "edge-c1.json").write_text(json.dumps({"host": "edge-c1", "models": []}))
    (applied / "applied").write_text("sha256:" + "a" * 64 + " " + "b" * 64 + " ok\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    hour = (datetime.datetime.now(datetime.timezone.utc).hour + 2) % 24
    closed = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": f"{hour:02d}:00",
               "end": f"{(hour + 1) % 24:02d}:00", "timezone": "UTC"}]
    config = {"edgeml_pull_host": "edge-c1", "edgeml_pull_registry": registry.url,
              "edgeml_pull_report_registry": registry.url, "edgeml_pull_repository": "bundles/site-w",
              "edgeml_pull_reports_prefix": "reports-w", "edgeml_pull_allowed_signers": str(allowed),
              "edgeml_pull_max_bytes": 1 << 30, "edgeml_pull_ca_path": registry.ca,
              "edgeml_pull_state_dir": str(state), "edgeml_pull_applied_dir": str(applied),
              "edgeml_pull_credentials": str(tmp_path / "credentials.yml"),
              "ansible_python_interpreter": str(ROOT / ".venv" / "bin" / "python")}

    def step(name, windows):
        run = playbook("edgeml.fleet.pull", "-i", "localhost,", "-e",
                       json.dumps(dict(config, edgeml_pull_step=name, edgeml_pull_download_windows=windows)))
        return run, json.loads((state / "status.json").read_text()) if (state / "status.json").exists() else None

    run, status = step("fetch", closed)
    assert run.rc == 0, run.failure("localhost")
    assert status["state"] == "waiting" and status["message"].startswith("waiting for download window daily"), status
    assert not (state / "bundle").exists()
    run, status = step("fetch", [])
    assert run.rc == 0 and status["state"] == "fetched", run.failure("localhost")
    assert (state / "bundle" / "manifest.json").exists()
    run, status = step("fetch", [])
    assert run.rc == 0 and status["state"] == "current", status
    run, _status = step("report", [])
    assert run.rc == 0, run.failure("localhost")
    got = collect_from(registry, tmp_path / "results", ["edge-c1"], prefix="reports-w")
    report = json.loads((tmp_path / "results" / "edge-c1.json").read_text())
    assert report["pull"] == {"fetch": status, "applied": "sha256:" + "a" * 64 + " " + "b" * 64 + " ok"}, got
    # The registry out of reach: the report stays on the host and goes at the next contact.
    (applied / "edge-c1.json").write_text(json.dumps({"host": "edge-c1", "models": [], "note": "while away"}))
    unreachable = playbook("edgeml.fleet.pull", "-i", "localhost,", "-e", json.dumps(dict(
        config, edgeml_pull_step="report", edgeml_pull_report_registry="https://127.0.0.1:9")))
    assert unreachable.rc != 0
    assert json.loads((state / "report" / "edge-c1.json").read_text())["note"] == "while away"
    assert step("report", [])[0].rc == 0
    collect_from(registry, tmp_path / "results", ["edge-c1"], prefix="reports-w")
    assert json.loads((tmp_path / "results" / "edge-c1.json").read_text())["note"] == "while away"
    # A refused bundle: the fetch fails, says why in the status, and the report carries it.
    bad = signed_bundle(tmp_path / "b2", key)
    (bad / "inventory" / "site.yml").write_text("altered after signing\n")
    push(registry, bad, repo="bundles/site-w")
    run, status = step("fetch", [])
    assert run.rc != 0 and status["state"] == "failed" and "refused" in status["message"], status
    assert step("report", [])[0].rc == 0
    collect_from(registry, tmp_path / "results", ["edge-c1"], prefix="reports-w")
    assert json.loads((tmp_path / "results" / "edge-c1.json").read_text())["pull"]["fetch"] == status
