"""model_sync, run as Ansible runs it on a host, against a hostile registry on loopback.

Every case first stages and activates a benign version from the same server, then asks for a
hostile one. It must fail with a message naming the problem, change nothing outside the store,
and leave the active version as it was.
"""

import base64
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from hostile_registry import (OCI_INDEX, HostileRegistry, bearer, digest_of, endless, raw,
                              redirect, self_signed)

sys.path.append(str(Path(__file__).resolve().parents[3] / "integration"))
from modules import run_module  # noqa: E402  pylint: disable=wrong-import-position

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
