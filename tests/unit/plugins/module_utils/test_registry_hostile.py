"""model_sync, run as Ansible runs it on a host, against a hostile registry on loopback.

Every case first stages and activates a benign version from the same server, then asks for a
hostile one. It must fail with a message naming the problem, change nothing outside the store,
and leave the active version as it was.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tar_members import tar_bytes
from hostile_registry import (OCI_INDEX, OCI_MANIFEST, TITLE as TITLE_KEY, HostileRegistry,
                              bearer, digest_of, endless, raw, redirect, self_signed)

sys.path.append(str(Path(__file__).resolve().parents[3] / "integration"))
from modules import module_command, module_env, run_module  # noqa: E402  pylint: disable=wrong-import-position

REPO = "models/m"
BENIGN = b"benign model bytes"
SECRETS = ("module-secret-3", "mirror-secret-1", "core-secret-2")
TRAVERSAL = "sha256:../../../x"  # from <store>/blobs/sha256/: tmp_path/x, a decoy


@pytest.fixture
def serve():
    """Start hostile registries; all are stopped after the test."""
    started = []

    def start(**kwargs):
        started.append(HostileRegistry(**kwargs))
        return started[-1]
    yield start
    for server in started:
        server.stop()


def sync(tmp_path, registries=None, **args):
    args = dict({"name": "m", "store_dir": str(tmp_path / "store"), "registries": registries,
                 "retries": 0, "timeout": 5}, **args)
    return run_module("model_sync", args)


def tree_digest(root, skip=None):
    """One digest of every path, type, mode, link target and content under root (but skip)."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.join(top, d) != skip)
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            info = os.lstat(path)
            digest.update(f"{os.path.relpath(path, root)}\0{info.st_mode}\0".encode())
            if os.path.islink(path):
                digest.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                digest.update(Path(path).read_bytes())
    return digest.hexdigest()


class Staged:
    """A store with an active benign version, decoys around it, and how both looked."""

    def __init__(self, tmp_path, registry, registries=None, **args):
        self.root, self.store = tmp_path, tmp_path / "store"
        (tmp_path / "x").write_text("decoy at the traversal target\n")
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        (tmp_path / "elsewhere" / "sha256").mkdir(parents=True)
        self.digest = registry.artifact(REPO, "good", BENIGN)
        result = sync(tmp_path, registries or [registry.url], ref=f"{REPO}:good", **args)
        assert not result.get("failed") and result["digest"] == self.digest, result
        self.current = self.store / "m" / "current"
        self.before = self.snapshot()

    def snapshot(self):
        return (tree_digest(self.root, skip=str(self.store)), os.readlink(self.current),
                tree_digest(self.current.resolve()))

    def assert_untouched(self):
        outside, current, files = self.snapshot()
        assert outside == self.before[0], "something outside the store changed"
        assert current == self.before[1], "the active version changed"
        assert files == self.before[2], "the active version's files changed"
        assert (self.current / "model.onnx").read_bytes() == BENIGN


def image_with(registry, tag, config=None, layers=None, **extra):
    config = config or registry.blob(b"{}")
    layers = layers if layers is not None else [registry.blob(b"layer", "model.onnx")]
    return registry.manifest(REPO, tag, registry.image(config, layers, **extra))


def bad_descriptor(digest):
    return {"mediaType": "application/octet-stream", "digest": digest, "size": 5,
            "annotations": {"org.opencontainers.image.title": "model.onnx"}}


def blob_answer(registry, tag, data, answer, size=None):
    """An image whose one layer (data, declared size) is served by answer."""
    layer = bad_descriptor(digest_of(data))
    layer["size"] = len(data) if size is None else size
    registry.blobs[layer["digest"]] = answer
    return image_with(registry, tag, layers=[layer])


# -- the cases: (serve, tmp_path) -> (registry, tag or @digest, fragment, module args (for the
#    benign stage too), servers that must see no request)
def digest_path_in(position):
    def case(serve, _tmp):
        registry = serve()
        bad = bad_descriptor(TRAVERSAL)
        if position == "config":
            image_with(registry, "bad", config=bad)
        elif position == "layers":
            image_with(registry, "bad", layers=[bad])
        elif position == "subject":
            image_with(registry, "bad", subject=bad)
        else:  # manifests of an index
            bad["platform"] = {"os": "linux", "architecture": "amd64"}
            registry.manifest(REPO, "bad", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                            "manifests": [bad]}, OCI_INDEX)
        return registry, "bad", "is not a sha256 digest", {}, []
    return case


def layer_digest(digest):
    def case(serve, _tmp):
        registry = serve()
        image_with(registry, "bad", layers=[bad_descriptor(digest)])
        return registry, "bad", "is not a sha256 digest", {}, []
    return case


def longer_than_declared(serve, _tmp):
    registry = serve()
    data = b"a" * 1024
    blob_answer(registry, "bad", data, raw(data + b"b" * (1 << 20)))
    return registry, "bad", "is longer than the 1024 bytes its descriptor declares", {}, []


def shorter_than_declared(serve, _tmp):
    registry = serve()
    data = b"short" * 10
    blob_answer(registry, "bad", data, raw(data), size=len(data) + 100)
    return registry, "bad", "broke off after 50 bytes", {}, []


def endless_stream(serve, _tmp):
    registry = serve()
    blob_answer(registry, "bad", b"c" * 1024, endless)
    return registry, "bad", "is longer than the 1024 bytes its descriptor declares", {}, []


def huge_manifest(serve, _tmp):
    registry = serve()
    image_with(registry, "bad", annotations={"padding": "x" * (5 << 20)})
    return registry, "bad", f"manifest {REPO}:bad is larger than 4194304 bytes", {}, []


def endless_manifest(serve, _tmp):
    registry = serve()
    registry.manifests[(REPO, "bad")] = endless
    return registry, "bad", f"manifest {REPO}:bad is larger than 4194304 bytes", {}, []


def redirect_to_file(serve, _tmp):
    registry = serve()
    blob_answer(registry, "bad", b"passwd?", redirect("file:///etc/passwd"))
    return registry, "bad", "refusing the redirect to file:///etc/passwd", {}, []


def redirect_loop(serve, _tmp):
    registry = serve()
    data = b"round and round"
    blob_answer(registry, "bad", data, redirect(f"/v2/{REPO}/blobs/{digest_of(data)}"))
    return registry, "bad", "more than 5 redirects", {}, []


def https_to_http(serve, tmp):
    storage = serve(host="127.0.0.2")
    registry = serve(tls=self_signed(tmp))
    blob_answer(registry, "bad", b"downgraded", redirect(f"{storage.url}/storage/x"))
    return (registry, "bad", f"refusing the redirect from https to plain http ({storage.url}",
            {"ca_path": str(tmp / "hostile.crt")}, [storage])


def realm_plain_http_elsewhere(serve, _tmp):
    realm = serve(host="127.0.0.2")
    registry = serve()
    registry.manifests[(REPO, "bad")] = bearer(f"{realm.url}/token")
    return (registry, "bad", f"refusing the token realm {realm.url}/token",
            {"username": "u", "password": SECRETS[0]}, [realm])


def realm_file(serve, _tmp):
    registry = serve()
    registry.manifests[(REPO, "bad")] = bearer("file:///etc/passwd")
    return registry, "bad", "refusing the token realm file:///etc/passwd", {}, []


def pinned_digest_served_other(serve, _tmp):
    registry = serve()
    other = image_with(registry, "other")
    pinned = "sha256:" + "0" * 64
    registry.manifests[(REPO, pinned)] = registry.manifests[(REPO, other)]
    return registry, f"@{pinned}", f"manifest {REPO}@{pinned} hashes to {other}", {}, []


def index_child_served_other(serve, _tmp):
    registry = serve()
    child, other = image_with(registry, "child"), image_with(registry, "other", config=registry.blob(b"[]"))
    registry.manifests[(REPO, child)] = registry.manifests[(REPO, other)]
    registry.manifest(REPO, "bad", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child, "size": 9}]},
        OCI_INDEX)
    return registry, "bad", f"manifest {REPO}@{child} hashes to {other}", {}, []


def wrong_password_for_mirror(serve, _tmp):
    registry = serve()
    registry.manifests[(REPO, "bad")] = raw(b"", 401, {"WWW-Authenticate": 'Basic realm="x"'})
    return (registry, "bad", "unauthorized (HTTP 401); check username and password",
            {"registries": [{"url": registry.url, "username": "mirror-user",
                             "password": SECRETS[1]}]}, [])


def layer_with(annotations=None, size="keep", platform=None):
    """An image whose one layer has these annotations, size (None: null, absent: no key)."""
    def case(serve, _tmp):
        registry = serve()
        layer = registry.blob(b"layer")
        if annotations is not None:
            layer["annotations"] = annotations
        if size == "absent":
            del layer["size"]
        elif size != "keep":
            layer["size"] = size
        if platform is not None:
            layer["platform"] = platform
        image_with(registry, "bad", layers=[layer])
        fragment = "annotations are not a map of strings" if annotations is not None else \
            "platform is not an object" if platform is not None else "is not a byte count"
        return registry, "bad", fragment, {}, []
    return case


def titled(title):
    def case(serve, _tmp):
        registry = serve()
        image_with(registry, "bad", layers=[registry.blob(b"layer", title)])
        return registry, "bad", f"is titled {title!r}: a file name must be one name", {}, []
    return case


def odd_platform(serve, _tmp):
    """An index whose platforms fit nothing: naming them in the message raised a TypeError."""
    registry = serve()
    child = image_with(registry, "child")
    entries = [{"mediaType": OCI_MANIFEST, "digest": child, "size": 9,
                "platform": {"os": "linux", "architecture": arch}} for arch in (5, "s390x")]
    registry.manifest(REPO, "bad", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                    "manifests": entries}, OCI_INDEX)
    return registry, "bad", "platform is not an object", {}, []


def two_layers_one_title(serve, _tmp):
    """The second link of one name would fail, and the copy that followed wrote the second
    blob's bytes through the first link: into the blob the active version's file is."""
    registry = serve()
    active = {"mediaType": "application/octet-stream", "digest": digest_of(BENIGN),
              "size": len(BENIGN), "annotations": {TITLE_KEY: "model.onnx"}}
    image_with(registry, "bad", layers=[active, registry.blob(b"EVIL", "model.onnx")])
    return registry, "bad", "two files of one name", {}, []


def no_config(serve, _tmp):
    registry = serve()
    registry.manifest(REPO, "bad", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                    "layers": [registry.blob(b"layer", "model.onnx")]})
    return registry, "bad", "has no config descriptor", {}, []


DEEP = b"[" * 100000  # json raises RecursionError, not ValueError


def deep_manifest(serve, _tmp):
    registry = serve()
    registry.manifests[(REPO, "bad")] = (DEEP, OCI_MANIFEST)
    return registry, "bad", "the manifest is not JSON", {}, []


def deep_error_body(serve, _tmp):
    registry = serve()
    registry.manifests[(REPO, "bad")] = raw(b'{"errors": ' + DEEP, 404)
    return registry, "bad", f"manifest {REPO}:bad: not found (HTTP 404)", {}, []


def deep_token_answer(serve, _tmp):
    registry = serve()
    registry.manifests[(REPO, "bad")] = bearer(f"{registry.url}/token")
    registry.paths["/token"] = raw(DEEP)
    return registry, "bad", f"no token from {registry.url}/token", {}, []


def range_not_satisfiable_from_zero(serve, _tmp):
    registry = serve()
    blob_answer(registry, "bad", b"never sent", raw(b"", 416))
    return registry, "bad", "failed verification", {}, []


def tar_layer(registry, *members):
    return registry.blob(tar_bytes(members), media_type="application/vnd.oci.image.layer.v1.tar")


def modelcar_with_record_name(kind):
    """A modelcar holding .edgeml-version.json: as a link, the store's record was written
    through it into model.onnx (and that version became current); as a directory, a traceback."""
    def case(serve, _tmp):
        registry = serve()
        member = ("models/.edgeml-version.json", tarfile.SYMTYPE, "model.onnx") if kind == "link" \
            else ("models/.edgeml-version.json/x", tarfile.REGTYPE, b"x")
        image_with(registry, "bad", layers=[tar_layer(
            registry, ("models/model.onnx", tarfile.REGTYPE, b"weights"), member)])
        return registry, "bad", "the name the store keeps for its version record", {}, []
    return case


CASES = {
    "digest path in config": digest_path_in("config"),
    "digest path in layers": digest_path_in("layers"),
    "digest path in index manifests": digest_path_in("manifests"),
    "digest path in subject": digest_path_in("subject"),
    "sha512 digest": layer_digest("sha512:" + "ab" * 64),
    "md5 digest": layer_digest("md5:" + "ab" * 16),
    "upper-case hex": layer_digest("sha256:" + "AB" * 32),
    "blob longer than declared": longer_than_declared,
    "blob shorter than declared": shorter_than_declared,
    "endless blob": endless_stream,
    "huge manifest": huge_manifest,
    "endless manifest": endless_manifest,
    "redirect to file://": redirect_to_file,
    "redirect loop": redirect_loop,
    "redirect https to http": https_to_http,
    "token realm plain http elsewhere": realm_plain_http_elsewhere,
    "token realm file://": realm_file,
    "pinned digest served other": pinned_digest_served_other,
    "index child served other": index_child_served_other,
    "wrong endpoint password": wrong_password_for_mirror,
    "two layers one title": two_layers_one_title,
    "title too long": titled("t" * 256),
    "title with a slash": titled("a/b"),
    "title a lone surrogate": titled("\ud800"),
    "annotations not a map": layer_with(annotations=["x"]),
    "title not a string": layer_with(annotations={"org.opencontainers.image.title": 5}),
    "platform not an object": layer_with(platform="linux"),
    "platform architecture not a string": odd_platform,
    "size null": layer_with(size=None),
    "size missing": layer_with(size="absent"),
    "manifest without config": no_config,
    "manifest nested deep": deep_manifest,
    "error body nested deep": deep_error_body,
    "token answer nested deep": deep_token_answer,
    "416 for a whole blob": range_not_satisfiable_from_zero,
    "modelcar record name as a link": modelcar_with_record_name("link"),
    "modelcar record name as a directory": modelcar_with_record_name("dir"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_registry_is_refused(case, serve, tmp_path):
    registry, tag, fragment, args, untouched = CASES[case](serve, tmp_path)
    args.setdefault("registries", [registry.url])
    staged = Staged(tmp_path, registry, **args)
    ref = REPO + (tag if tag.startswith("@") else f":{tag}")
    result = sync(tmp_path, ref=ref, **args)
    assert result.get("failed"), result
    assert fragment in result["msg"], result["msg"]
    staged.assert_untouched()
    for server in untouched:
        assert server.requests == [], f"{server.url} was contacted: {server.requests}"
    assert not any(secret in json.dumps(result) for secret in SECRETS), result


def test_storage_redirect_to_another_host_gets_no_credentials(serve, tmp_path):
    storage = serve(host="127.0.0.2")
    registry = serve(basic=("core-user", SECRETS[2]))
    creds = {"username": "core-user", "password": SECRETS[2]}
    staged = Staged(tmp_path, registry, **creds)
    data = b"a model that lives in object storage"
    storage.paths["/bucket/object"] = data
    blob_answer(registry, "moved", data, redirect(f"{storage.url}/bucket/object?X-Sig=abc"))
    result = sync(tmp_path, [registry.url], ref=f"{REPO}:moved", state="present", **creds)
    assert not result.get("failed"), result
    assert storage.requests and storage.authorizations() == []
    assert registry.authorizations()  # the registry itself did get them (plain http, loopback)
    staged.assert_untouched()  # state=present: staged beside, the active version as it was


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_each_endpoint_gets_only_its_own_credentials(serve, tmp_path):
    """A mirror (own credentials, lacks the image), an endpoint with none of its own (the
    module's), and core (own credentials) that serves it."""
    mirror = serve(basic=("mirror-user", SECRETS[1]))
    plain = serve(basic=("module-user", SECRETS[0]))
    core = serve(basic=("core-user", SECRETS[2]))
    digest = core.artifact(REPO, "1", BENIGN)
    result = sync(tmp_path, [{"url": mirror.url, "username": "mirror-user", "password": SECRETS[1]},
                             {"url": plain.url},
                             {"url": core.url, "username": "core-user", "password": SECRETS[2]}],
                  ref=f"{REPO}:1", username="module-user", password=SECRETS[0])
    assert not result.get("failed") and result["digest"] == digest, result
    assert result["source"] == core.url
    assert set(mirror.authorizations()) == {basic("mirror-user", SECRETS[1])}
    assert set(plain.authorizations()) == {basic("module-user", SECRETS[0])}
    assert set(core.authorizations()) == {basic("core-user", SECRETS[2])}
    assert not any(secret in json.dumps(result) for secret in SECRETS), result


def run_bounded(tmp_path, registries, seconds=60, **args):
    """sync(), but a hang fails the test instead of holding it."""
    args = dict({"name": "m", "store_dir": str(tmp_path / "store"), "registries": registries,
                 "retries": 0, "timeout": 5, "_ansible_check_mode": False}, **args)
    try:
        proc = subprocess.run(module_command("model_sync", args), env=module_env(),
                              capture_output=True, text=True, timeout=seconds, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"model_sync hung for {seconds} s")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"model_sync printed no JSON: {proc.stdout}\n{proc.stderr}") from None


def test_an_empty_file_is_staged(serve, tmp_path):
    """A zero-byte layer never opened its partial file, and publishing it raised a traceback."""
    registry = serve()
    image_with(registry, "empty", layers=[registry.blob(b"", "empty.txt"),
                                          registry.blob(b"w", "model.onnx")])
    result = sync(tmp_path, [registry.url], ref=f"{REPO}:empty")
    assert not result.get("failed"), result
    assert (tmp_path / "store" / "m" / "current" / "empty.txt").read_bytes() == b""


@pytest.mark.parametrize("planted", ["symlink", "fifo", "directory"])
def test_a_planted_partial_file_is_never_followed(serve, tmp_path, planted):
    """A partial file that is a link made root append the download to the file it named; a
    FIFO hung the run for ever. A link or FIFO is removed and the blob fetched afresh; a
    directory is refused. Nothing outside the store changes either way."""
    registry = serve()
    staged = Staged(tmp_path, registry)
    data = b"the next version, longer than the file a link names " * 4
    registry.artifact(REPO, "next", data)
    partial = staged.store / "blobs" / "sha256" / (digest_of(data)[7:] + ".partial")
    if planted == "symlink":
        os.symlink(tmp_path / "etc" / "passwd", partial)
    elif planted == "fifo":
        os.mkfifo(partial)
    else:
        partial.mkdir()
    staged.before = staged.snapshot()
    result = run_bounded(tmp_path, [registry.url], ref=f"{REPO}:next", state="present")
    staged.assert_untouched()
    if planted == "directory":
        assert result.get("failed") and "is a directory, not a partial download" in result["msg"]
    else:
        assert not result.get("failed"), result
        assert (staged.store / "blobs" / "sha256" / digest_of(data)[7:]).read_bytes() == data


@pytest.mark.parametrize("planted", ["blobs/sha256", "m/versions", "m"])
def test_store_directories_planted_as_links_are_refused(serve, tmp_path, planted):
    """A store an older release made is the service user's: it could swap one of the store's
    directories for a link. Through blobs/sha256 clean-up deleted every file the link led to;
    through m/versions a sync staged outside, then chowned and chmodded what lay there."""
    registry = serve()
    staged = Staged(tmp_path, registry, owner="root", group="root")
    path = staged.store / planted
    os.rename(path, path.with_name(path.name + ".moved"))
    os.symlink(tmp_path / "etc", path)
    before = tree_digest(tmp_path, skip=str(staged.store))
    for args in ({"ref": f"{REPO}:good", "owner": "root", "group": "nogroup"},
                 {"ref": f"{REPO}:good", "owner": "root", "group": "nogroup"},  # twice: 2nd chowned
                 {"state": "absent"}):
        result = sync(tmp_path, [registry.url], **args)
        assert result.get("failed"), result
        assert f"{path} is a symlink" in result["msg"], result["msg"]
    assert tree_digest(tmp_path, skip=str(staged.store)) == before
    assert os.stat(tmp_path / "etc" / "passwd").st_gid == 0


@pytest.mark.parametrize("planted", ["symlink", "another user's"])
def test_a_lock_planted_by_someone_else_is_refused(serve, tmp_path, planted):
    """A lock file the service user made, it could hold for ever (every run then 'busy')."""
    registry = serve()
    staged = Staged(tmp_path, registry)
    lock = staged.store / ".lock"
    lock.unlink()
    if planted == "symlink":
        os.symlink(tmp_path / "etc" / "passwd", lock)
    else:
        lock.touch()
        os.chown(lock, 65534, 65534)
    staged.before = staged.snapshot()
    result = sync(tmp_path, [registry.url], ref=f"{REPO}:good")
    assert result.get("failed") and "lock" in result["msg"], result
    assert "remove it" in result["msg"].lower(), result["msg"]
    staged.assert_untouched()


def test_orphans_of_failed_syncs_do_not_pile_up(serve, tmp_path):
    """Each failed sync left its sound blobs and partial files, and nothing removed them: a
    hostile source could fill the disk run after run (clean-up ran only after pruning)."""
    registry = serve()
    staged = Staged(tmp_path, registry)
    blobs = staged.store / "blobs" / "sha256"
    kept = set(os.listdir(blobs))
    left = []
    for run in range(3):
        sound = registry.blob(f"sound {run}".encode() * 1000, "a.bin")
        cut = f"cut {run}".encode() * 1000
        broken = bad_descriptor(digest_of(cut))
        broken["size"] = len(cut)
        registry.blobs[broken["digest"]] = raw(cut[:100], length=len(cut))  # breaks off
        image_with(registry, f"bad{run}", layers=[sound, broken])
        result = sync(tmp_path, [registry.url], ref=f"{REPO}:bad{run}")
        assert result.get("failed") and "broke off after 100 bytes" in result["msg"], result
        left = set(os.listdir(blobs)) - kept
        # This image's own leftovers stay (a re-run resumes them), earlier runs' are gone.
        assert left == {sound["digest"][7:], broken["digest"][7:] + ".partial"}, left
    staged.assert_untouched()


def test_a_mirror_that_sends_wrong_bytes_then_breaks_off_cannot_block_core(serve, tmp_path):
    """The partial file the mirror left was resumed from core, the whole failed verification,
    and core was blamed ('the registry's copy is corrupt'): every run, for as long as the
    mirror kept doing it. A resumed download that fails verification is fetched once whole."""
    mirror, core = serve(), serve(host="127.0.0.2")
    staged = Staged(tmp_path, core)
    data = b"the next version from core " * 100
    descriptor = core.blob(data, "model.onnx")
    doc = core.image(core.blob(b"{}"), [descriptor])
    digest = core.manifest(REPO, "next", doc)
    mirror.manifest(REPO, "next", doc)
    mirror.blobs[descriptor["digest"]] = raw(b"X" * 1000, length=len(data))  # wrong, then cut
    result = sync(tmp_path, [mirror.url, core.url], ref=f"{REPO}:next")
    assert not result.get("failed"), result["msg"]
    assert result["digest"] == digest and (staged.current / "model.onnx").read_bytes() == data
    assert tree_digest(tmp_path, skip=str(staged.store)) == staged.before[0]
