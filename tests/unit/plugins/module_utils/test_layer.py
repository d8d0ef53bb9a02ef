"""Modelcar layer extraction: a hostile corpus and property tests. Every case runs in a sandbox
root/ with root/target/ as the target and decoys around it; the whole of root/ but target's
content is fingerprinted before and after, and must not change, whatever the layer does."""

import functools
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.edgeml.fleet.plugins.module_utils import _layer
from ansible_collections.edgeml.fleet.plugins.module_utils._layer import (
    HostileLayer, LayerError, extract_layers)

KiB, MiB = 1 << 10, 1 << 20
EXAMPLES = int(os.environ.get("EDGEML_HYPOTHESIS_EXAMPLES", "200"))


# -- members and layers -----------------------------------------------------------------------
class Zeros:
    """A file object of n zero bytes, for members too big to hold in memory."""

    def __init__(self, size):
        self.left = size

    def read(self, size=-1):
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def reg(name, data=b"x", mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, io.BytesIO(data)


def zeros(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    return info, Zeros(size)


def typed(name, kind, linkname="", mode=0o755):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def mkdir(name, mode=0o755):
    return typed(name, tarfile.DIRTYPE, mode=mode)


def sym(name, target):
    return typed(name, tarfile.SYMTYPE, target)


def hard(name, target):
    return typed(name, tarfile.LNKTYPE, target)


def tar(*members, compress=False, fmt=tarfile.PAX_FORMAT):
    raw = io.BytesIO()
    out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) if compress else raw
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for info, payload in members:
            archive.addfile(info, payload)
    if compress:
        out.close()
    return raw.getvalue()


def checksummed(header):
    header = bytearray(header)
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


def gnu_sparse_tar(name):
    """A GNU (old format) sparse member by hand: 4 bytes of data, 1 GiB apparent size."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 512
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[386:398] = b"%011o\0" % (1 << 30)  # one sparse entry: offset 1 GiB …
    header[398:410] = b"%011o\0" % 4  # … 4 bytes
    header[483:495] = b"%011o\0" % ((1 << 30) + 4)  # real size
    return checksummed(header) + b"abcd".ljust(512, b"\0") + bytes(1024)


def pax_sparse_tar(name):
    """A PAX 1.0 sparse member (GNU.sparse.major=1): the map sits in front of the data."""
    info = tarfile.TarInfo(name)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": name, "GNU.sparse.realsize": str(1 << 30)}
    data = b"1\n0\n4\n".ljust(512, b"\0") + b"abcd"
    info.size = len(data)
    return tar((info, io.BytesIO(data)))


def pax_record(key, value):
    body = b" " + key + b"=" + value + b"\n"
    length = next(n for n in range(1, 1000) if len(str(n)) + len(body) == n)
    return str(length).encode() + body


def pax_name_tar(raw_name, data=b"x"):
    """A member whose pax path is raw_name (bytes tarfile would never write, such as NUL)."""
    record = pax_record(b"path", raw_name)
    pax = tarfile.TarInfo("pax")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    member = tarfile.TarInfo("models/placeholder")
    member.size = len(data)
    return (pax.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
            + member.tobuf(tarfile.USTAR_FORMAT) + data.ljust(512, b"\0") + bytes(1024))


def long_name_claim_tar(claimed):
    """A GNU long-name header claiming `claimed` bytes (tarfile would read them in one go)."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, claimed
    return gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + bytes(64 * KiB), mtime=0)


def negative_size_tar():
    """A member outside the model path whose size is negative (base-256): tarfile would seek
    back over it for ever."""
    first, loop = tarfile.TarInfo("models/a"), tarfile.TarInfo("etc/loop")
    first.size, loop.size = 1, -1024
    return (first.tobuf(tarfile.GNU_FORMAT) + b"x".ljust(512, b"\0")
            + loop.tobuf(tarfile.GNU_FORMAT) + bytes(2048))


@functools.lru_cache(maxsize=None)
def gzip_bomb():
    return tar(zeros("models/zeros.bin", 200 * MiB), compress=True)


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the sandbox ------------------------------------------------------------------------------
def build_sandbox(base):
    """base/root with decoys around base/root/target; blobs live in base/blobs, off root."""
    root = os.path.join(base, "root")
    for directory in ("target", "victim/sub", "b", "models"):
        os.makedirs(os.path.join(root, directory))
    files = {"outside.txt": b"decoy", "victim/secret.txt": b"secret", "a": b"a decoy",
             "victim/sub/deep.txt": b"deep", "b/f": b"b decoy", "models/x": b"a model decoy"}
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as out:
            out.write(data)
    os.chmod(os.path.join(root, "victim", "secret.txt"), 0o600)
    os.symlink("../outside.txt", os.path.join(root, "victim", "link"))
    os.symlink("victim", os.path.join(root, "vlink"))
    os.makedirs(os.path.join(base, "blobs"))
    return root


def fingerprint(root):
    """Every entry of root but target's content: name, type, mode, owner, size, times, inode,
    link count, link text, content hash. target itself is included (type, mode, inode)."""
    seen = {}
    for dirpath, dirs, names in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirs.remove("target")
            names.append("target")
        for name in dirs + names:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            extra = None
            if stat.S_ISLNK(info.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    extra = hashlib.sha256(handle.read()).hexdigest()
            rel = os.path.normpath(os.path.join(rel_dir, name))
            seen[rel] = (info.st_mode, info.st_uid, info.st_gid, info.st_ino)
            if rel != "target":  # its size, times and link count follow what it holds
                seen[rel] += (info.st_size, info.st_mtime_ns, info.st_nlink, extra)
    info = os.lstat(root)
    seen["."] = (info.st_mode, info.st_ino, info.st_mtime_ns)
    return seen


def run(base, layers, max_bytes=MiB, prefix="models/", **kwargs):
    """Extract layers (bytes each) in base's sandbox; returns (files or None, error or None,
    outside_touched). Anything but HostileLayer escaping the extractor fails the test."""
    root = build_sandbox(base) if not os.path.isdir(os.path.join(base, "root")) else \
        os.path.join(base, "root")
    blobs = []
    for index, data in enumerate(layers):
        path = os.path.join(base, "blobs", f"{index}")
        with open(path, "wb") as out:
            out.write(data)
        blobs.append((path, digest_of(data)))
    before = fingerprint(root)
    files = error = None
    try:
        files = extract_layers(blobs, os.path.join(root, "target"), prefix, max_bytes, **kwargs)
    except HostileLayer as exc:
        error = exc
    return files, error, fingerprint(root) != before


def target_links_inside(target):
    top = os.path.realpath(target)
    for dirpath, dirs, names in os.walk(target):
        for name in dirs + names:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if not (real == top or real.startswith(top + os.sep)) or not os.path.exists(path):
                    return False
    return True


# -- the hostile corpus -----------------------------------------------------------------------
# (category, id, layers, expected) where expected is a regex the refusal must match, or a
# function checking (target, files) after a success. kwargs go to extract_layers.
ESCAPE = [mkdir("models/sub"), sym("models/sub/p", ".."), sym("models/esc", "sub/p/..")]


def expect_files(wanted):
    def check(target, files):
        assert {rel: info.get("link") or open(os.path.join(target, rel), "rb").read()
                for rel, info in files.items()} == wanted
    return check


def modes(wanted):
    def check(target, files):
        assert {rel: stat.S_IMODE(os.lstat(os.path.join(target, rel)).st_mode)
                for rel in wanted} == wanted
    return check


CORPUS = [
    # traversal and odd names
    ("traversal", "dotdot", [tar(reg("../outside.txt"))], "climbs out"),
    ("traversal", "models-dotdot", [tar(reg("models/../../outside.txt"))], "climbs out"),
    ("traversal", "dot-dotdot", [tar(reg("./../outside.txt"))], "climbs out"),
    ("traversal", "deep-dotdot", [tar(reg("models/./sub/../../../victim/secret.txt"))],
     "climbs out"),
    ("traversal", "absolute", [tar(reg("/models/x"))], "absolute"),
    ("traversal", "absolute-etc", [tar(reg("/etc/passwd"))], "absolute"),
    ("traversal", "nul", [pax_name_tar(b"models/a\0/../../outside.txt")], "NUL"),
    ("traversal", "backslash", [tar(reg("models/a\\..\\..\\outside.txt"))], "backslash"),
    ("traversal", "long-name", [tar(reg("models/" + "/".join(["d" * 200] * 25)))],
     "longer than 4096"),
    ("traversal", "long-component", [tar(reg("models/" + "c" * 300))], "longer than 255"),
    ("traversal", "deep", [tar(reg("models/" + "d/" * 200 + "f"))], "more than 128"),
    ("traversal", "whiteout-dir-name", [tar(reg("models/.wh.d/x"))], "whiteout name"),
    # symlinks
    ("symlink", "absolute", [tar(sym("models/l", "/etc/passwd"))], "absolute target"),
    ("symlink", "dotdot", [tar(sym("models/l", "../outside.txt"))], "points outside"),
    ("symlink", "chain-a-b", [tar(sym("models/b", ".."), sym("models/a", "b/.."))],
     "points outside"),
    ("symlink", "chain-lexically-inside", [tar(*ESCAPE)], "once every layer"),
    ("symlink", "chain-reenters-target",
     [tar(reg("models/f"), mkdir("models/sub"), sym("models/sub/b", ".."),
          sym("models/a", "sub/b/../target/f"))], "symlink 'models/a'.*once every layer"),
    ("symlink", "write-through-dir-link",
     [tar(mkdir("models/sub"), sym("models/d", "sub"), reg("models/d/x"))],
     "goes through the symlink 'models/d'"),
    ("symlink", "write-through-escape", [tar(*ESCAPE, reg("models/esc/outside.txt"))],
     "goes through the symlink 'models/esc'"),
    ("symlink", "write-through-escape-next-layer",
     [tar(*ESCAPE), tar(reg("models/esc/outside.txt", b"pwned"))],
     "goes through the symlink"),
    ("symlink", "replaces-dir-then-file-under",
     [tar(mkdir("models/d"), reg("models/d/f"), *ESCAPE, sym("models/d", "sub/p/.."),
          reg("models/d/outside.txt"))], "goes through the symlink 'models/d'"),
    ("symlink", "mkdir-through-escape", [tar(*ESCAPE, mkdir("models/esc/newdir"))],
     "goes through the symlink"),
    ("symlink", "loop", [tar(sym("models/a", "b"), sym("models/b", "a"))], "once every layer"),
    ("symlink", "dangling", [tar(sym("models/a", "missing"))], "once every layer"),
    ("symlink", "file-then-slash", [tar(reg("models/f"), sym("models/a", "f/"))],
     "once every layer"),
    ("symlink", "relative-inside-ok",
     [tar(reg("models/blobs/abc", b"weights"), mkdir("models/snap/x"),
          sym("models/snap/x/model.onnx", "../../blobs/abc"), sym("models/latest", "snap/x"))],
     expect_files({"blobs/abc": b"weights", "snap/x/model.onnx": "../../blobs/abc",
                   "latest": "snap/x"})),
    # hard links
    ("hardlink", "outside-prefix", [tar(hard("models/h", "etc/passwd"))], "hard link.*outside"),
    ("hardlink", "dotdot", [tar(hard("models/h", "../outside.txt"))], "hard link.*climbs out"),
    ("hardlink", "models-dotdot", [tar(hard("models/h", "models/../../outside.txt"))],
     "hard link.*climbs out"),
    ("hardlink", "absolute", [tar(hard("models/h", "/etc/passwd"))], "hard link.*absolute"),
    ("hardlink", "through-symlink",
     [tar(reg("models/sub/f"), sym("models/s", "sub"), hard("models/h", "models/s/f"))],
     "hard link.*goes through the symlink 'models/s'"),
    ("hardlink", "through-escape", [tar(*ESCAPE, hard("models/h", "models/esc/outside.txt"))],
     "hard link.*goes through the symlink"),
    ("hardlink", "to-symlink", [tar(reg("models/f"), sym("models/s", "f"),
                                    hard("models/h", "models/s"))], "not a regular file"),
    ("hardlink", "to-directory", [tar(mkdir("models/d"), hard("models/h", "models/d"))],
     "not a regular file"),
    ("hardlink", "to-missing", [tar(hard("models/h", "models/later"), reg("models/later"))],
     "no source"),
    ("hardlink", "dest-is-escaping-symlink",
     [tar(*ESCAPE, sym("models/h2", "esc/outside.txt"), reg("models/f", b"mine")),
      tar(hard("models/h2", "models/f"), reg("models/.wh.esc"), reg("models/.wh.sub"))],
     expect_files({"f": b"mine", "h2": b"mine"})),
    ("hardlink", "dest-is-symlink-refused-later",
     [tar(*ESCAPE, sym("models/h2", "esc/outside.txt"), reg("models/f", b"mine"),
          hard("models/h2", "models/f"))], "symlink 'models/esc'.*once every layer"),
    ("hardlink", "copy-ok", [tar(reg("models/f", b"data", 0o755), hard("./models/g", "./models/f"))],
     expect_files({"f": b"data", "g": b"data"})),
    # whiteouts
    ("whiteout", "empty", [tar(reg("models/f")), tar(reg("models/.wh."))], "does not name"),
    ("whiteout", "dot", [tar(reg("models/f")), tar(reg("models/.wh.."))], "does not name"),
    ("whiteout", "dotdot", [tar(reg("models/f")), tar(reg("models/.wh..."))], "does not name"),
    ("whiteout", "of-whiteout", [tar(reg("models/.wh..wh.x"))], "does not name"),
    ("whiteout", "of-parent", [tar(reg("models/sub/f")), tar(reg("models/sub/../.wh.outside.txt"))],
     "climbs out"),
    ("whiteout", "dotdot-dir", [tar(reg("models/.wh../outside.txt"))], "whiteout name"),
    ("whiteout", "through-symlink",
     [tar(reg("models/sub/f"), sym("models/s", "sub")), tar(reg("models/s/.wh.f"))],
     "whiteout.*goes through the symlink 'models/s'"),
    ("whiteout", "through-escape", [tar(*ESCAPE), tar(reg("models/esc/.wh.outside.txt"))],
     "whiteout.*goes through the symlink"),
    ("whiteout", "opaque-through-escape", [tar(*ESCAPE), tar(reg("models/esc/.wh..wh..opq"))],
     "whiteout.*goes through the symlink"),
    ("whiteout", "opaque-at-model-root",
     [tar(reg("models/old"), reg("models/d/old")),
      tar(reg("models/.wh..wh..opq"), reg("models/new", b"n"))],
     expect_files({"new": b"n"})),
    ("whiteout", "opaque-at-image-root",
     [tar(reg("models/old")), tar(reg(".wh..wh..opq"), reg("models/new", b"n"))],
     expect_files({"new": b"n"})),
    ("whiteout", "of-model-dir",
     [tar(reg("models/old")), tar(reg("models/-new", b"n"), reg(".wh.models"))],
     expect_files({"-new": b"n"})),
    ("whiteout", "spares-own-layer",
     [tar(reg("models/d/old"), reg("models/gone")),
      tar(reg("models/d/-new", b"n"), reg("models/d/.wh..wh..opq"), reg("models/.wh.gone"))],
     expect_files({"d/-new": b"n"})),
    ("whiteout", "removes-symlink-not-target",
     [tar(*ESCAPE[:2], sym("models/l", "sub")),
      tar(reg("models/.wh.l"), reg("models/.wh.sub"), reg("models/f", b"f"))],
     expect_files({"f": b"f"})),
    # devices and other types
    ("device", "char", [tar(typed("models/null", tarfile.CHRTYPE))], "device or FIFO"),
    ("device", "block", [tar(typed("models/sda", tarfile.BLKTYPE))], "device or FIFO"),
    ("device", "fifo", [tar(typed("models/fifo", tarfile.FIFOTYPE))], "device or FIFO"),
    ("device", "unknown-type", [tar(typed("models/odd", b"Z"))], "unsupported type"),
    ("device", "outside-prefix-ignored",
     [tar(typed("dev/null", tarfile.CHRTYPE), reg("etc/sys\\x2dfoo.slice"), reg("models/m", b"m"))],
     expect_files({"m": b"m"})),
    ("device", "sparse-gnu", [gnu_sparse_tar("models/sparse")], "sparse"),
    ("device", "sparse-pax", [pax_sparse_tar("models/sparse")], "sparse"),
    # modes
    ("modes", "setuid-stripped",
     [tar(reg("models/suid", b"s", 0o4755), reg("models/sgid", b"g", 0o3644),
          reg("models/open", b"o", 0o777), mkdir("models/d", 0o7777), reg("models/d/f"))],
     modes({"suid": 0o750, "sgid": 0o640, "open": 0o750, "d": 0o750, "d/f": 0o640})),
    # duplicates: later members replace earlier ones
    ("duplicate", "same-file", [tar(reg("models/f", b"one"), reg("models/f", b"two"))],
     expect_files({"f": b"two"})),
    ("duplicate", "file-dir-file",
     [tar(reg("models/n", b"file"), mkdir("models/n"), reg("models/n/x", b"x"))],
     expect_files({"n/x": b"x"})),
    ("duplicate", "dir-then-file", [tar(reg("models/n/x"), reg("models/n", b"file"))],
     expect_files({"n": b"file"})),
    ("duplicate", "symlink-then-file",
     [tar(reg("models/x", b"keep"), sym("models/l", "x")), tar(reg("models/l", b"new"))],
     expect_files({"x": b"keep", "l": b"new"})),
    ("duplicate", "dir-then-symlink",
     [tar(reg("models/d/f"), reg("models/x", b"x")), tar(sym("models/d", "x"))],
     expect_files({"x": b"x", "d": "x"})),
    # budgets
    ("budget", "gzip-bomb", [gzip_bomb()], "unpacks to more than 1048576"),
    ("budget", "many-members-bomb", [tar(*(zeros(f"models/z{i}", MiB) for i in range(64)),
                                         compress=True)], "unpacks to more than"),
    ("budget", "hardlink-bomb",
     [tar(reg("models/f", bytes(KiB)), *(hard(f"models/h{i}", "models/f") for i in range(10000)),
          compress=True)], "unpacks to more than .*hard link"),
    ("budget", "across-layers", [tar(zeros("models/one", 600 * KiB)),
                                 tar(zeros("models/two", 600 * KiB))], "layer sha256:.*more than"),
    ("budget", "member-count", [tar(*(mkdir(f"models/d{i}") for i in range(50)))],
     "past 20 entries", {"max_members": 20}),
    ("budget", "long-name-claim", [long_name_claim_tar(1 << 30)], "claims 1073741824 bytes"),
    ("budget", "negative-size", [negative_size_tar()], "claims -1024 bytes|backwards"),
    # damaged streams
    ("stream", "garbage", [b"garbage" * 100], "could not be unpacked"),
    ("stream", "truncated-gzip", [tar(reg("models/f", os.urandom(4096)), compress=True)[:2000]],
     "could not be unpacked"),
    ("stream", "truncated-member", [tar(reg("models/f", bytes(4096)))[:2048]],
     "could not be unpacked"),
    ("stream", "empty-layer", [tar(), gzip.compress(bytes(1024)), tar(reg("models/m", b"m"))],
     expect_files({"m": b"m"})),
]


def corpus_params():
    return [pytest.param(entry[2], entry[3], entry[4] if len(entry) > 4 else {},
                         id=f"{entry[0]}-{entry[1]}") for entry in CORPUS]


@pytest.mark.parametrize("layers,expected,kwargs", corpus_params())
def test_hostile_corpus(tmp_path, layers, expected, kwargs):
    files, error, touched = run(str(tmp_path), layers, **kwargs)
    assert not touched, "something outside target changed"
    target = str(tmp_path / "root" / "target")
    if isinstance(expected, str):
        assert error is not None, f"accepted, files {files}"
        assert re.search(expected, error.msg), error.msg
        assert error.msg.startswith(("layer sha256:", "the image"))
    else:
        assert error is None, error.msg
        expected(target, files)
        assert target_links_inside(target)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 25
    assert sum(isinstance(entry[3], str) for entry in CORPUS) >= 25


def test_messages_name_the_layer_and_member(tmp_path):
    layers = [tar(reg("models/a")), tar(typed("models/dev", tarfile.CHRTYPE))]
    _files, error, _touched = run(str(tmp_path), layers)
    assert error.msg == (f"layer {digest_of(layers[1])[:19]}…: member 'models/dev' is a "
                         "device or FIFO")


def test_files_are_recorded_with_digest_and_size(tmp_path):
    files, error, _touched = run(str(tmp_path), [tar(reg("models/a/w.bin", b"weights"),
                                                     sym("models/l", "a/w.bin"))])
    assert error is None
    assert files == {"a/w.bin": {"digest": digest_of(b"weights"), "size": 7},
                     "l": {"link": "a/w.bin"}}


def test_disk_full_is_not_a_hostile_layer(tmp_path, monkeypatch):
    def full(_fd, _data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_layer, "_write_all", full)
    with pytest.raises(LayerError, match="disk full while unpacking layer sha256:") as caught:
        run(str(tmp_path), [tar(reg("models/a"))])
    assert not isinstance(caught.value, HostileLayer)


def test_prefix_must_not_climb(tmp_path):
    with pytest.raises(LayerError, match="plain path"):
        run(str(tmp_path), [tar(reg("models/a"))], prefix="../models/")


def test_nested_prefix_and_whole_image(tmp_path):
    layers = [tar(reg("opt/app/models/m", b"m"), reg("opt/app/other", b"o"))]
    files, error, _touched = run(str(tmp_path / "one"), layers, prefix="opt/app/models")
    assert error is None and list(files) == ["m"]
    files, error, _touched = run(str(tmp_path / "two"), layers, prefix="/")
    assert error is None and sorted(files) == ["opt/app/models/m", "opt/app/other"]


# -- property tests ---------------------------------------------------------------------------
# Mostly plain names, so that images get far enough for links, hard links and whiteouts to
# meet; the rest are the names and link texts an attacker would try.
PLAIN = ["a", "b", "c"]
RISKY = ["..", ".", "", ".wh.a", ".wh..wh..opq", ".wh.", ".wh..", ".wh...", "target",
         "outside.txt", "victim", "vlink", "models"]
LINK_TEXTS = ["a", "b", "c/a", "../a", "../b/c", ".", "..", "../..", "../outside.txt",
              "/etc/passwd", "a/../..", "b/..", "../target/a", "../../victim", "a/b", "b/a/..",
              "../vlink", "./a", "a/"]

segments = st.lists(st.sampled_from(PLAIN * 30 + RISKY), min_size=1, max_size=3).map("/".join)
names = st.tuples(st.sampled_from(["models/"] * 30 + ["./models/", "", "/", "../", "etc/"]),
                  segments).map("".join)
MEMBERS = {
    "file": lambda: st.tuples(names, st.binary(max_size=8), st.sampled_from([0o644, 0o4755])),
    "dir": lambda: st.tuples(names),
    "sym": lambda: st.tuples(names, st.sampled_from(PLAIN * 4 + LINK_TEXTS)),
    "hard": lambda: st.tuples(names, st.one_of(names, segments.map("models/".__add__))),
    "node": lambda: st.tuples(names, st.sampled_from([tarfile.CHRTYPE, tarfile.FIFOTYPE])),
    "whiteout": lambda: st.tuples(st.sampled_from(["models/"] * 4 + ["", "models/a/"]),
                                  st.sampled_from(PLAIN * 10 + RISKY)),
}
KINDS = ["file"] * 8 + ["dir"] * 4 + ["sym"] * 5 + ["hard"] * 3 + ["whiteout"] * 3 + ["node"]
members = st.sampled_from(KINDS).flatmap(
    lambda kind: MEMBERS[kind]().map(lambda fields: (kind,) + fields))
# Only plain names (links may still climb): more images get through to the final link check.
plain_paths = st.lists(st.sampled_from(PLAIN), min_size=1, max_size=2).map(
    lambda parts: "models/" + "/".join(parts))


def plain_layer(paths):
    """Files first, then links to them (or climbing), hard links to them, whiteouts."""
    files = [("file", path, b"x", 0o644) for path in paths]
    later = st.one_of(
        st.tuples(st.just("sym"), plain_paths, st.sampled_from(
            PLAIN + ["../a", "../b", "..", "a/..", "b/../..", "c/a", "a/b"])),
        st.tuples(st.just("hard"), plain_paths, st.sampled_from(paths)),
        st.tuples(st.just("whiteout"), st.just("models/"), st.sampled_from(PLAIN)),
    )
    return st.lists(later, max_size=4).map(lambda rest: files + rest)


plain_layers = st.lists(plain_paths, min_size=1, max_size=4).flatmap(plain_layer)
images = st.one_of(st.lists(st.lists(members, max_size=8), min_size=1, max_size=3),
                   st.lists(plain_layers, min_size=1, max_size=3))


def build(member):
    kind, name = member[:2]
    if kind == "file":
        return reg(name, member[2], member[3])
    if kind == "dir":
        return mkdir(name)
    if kind == "sym":
        return sym(name, member[2])
    if kind == "hard":
        return hard(name, member[2])
    if kind == "whiteout":
        return reg(name + ".wh." + member[2] if member[2] != ".wh..wh..opq" else name + member[2])
    return typed(name, member[2])


def check_invariants(layers, **kwargs):
    with tempfile.TemporaryDirectory() as base:
        try:
            files, error, touched = run(base, layers, **kwargs)
            assert not touched, "something outside target changed"
            target = os.path.join(base, "root", "target")
            assert os.path.isdir(target) and not os.path.islink(target)
            if error is None:
                assert target_links_inside(target)
                for rel, info in files.items():
                    mode = os.lstat(os.path.join(target, rel)).st_mode
                    assert stat.S_ISLNK(mode) if "link" in info else \
                        stat.S_IMODE(mode) in (0o640, 0o750)
        finally:
            shutil.rmtree(base, ignore_errors=True)  # never follows the links it meets


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images, st.booleans())
def test_property_nothing_outside_target_changes(image, compress):
    check_invariants([tar(*(build(m) for m in layer), compress=compress) for layer in image])


@settings(max_examples=max(EXAMPLES // 2, 10), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=12),
       st.booleans())
def test_property_damaged_layers_are_refused_cleanly(flips, compress):
    """Bytes of a sound layer (its tar headers, or its gzip stream) changed at random."""
    data = bytearray(tar(reg("models/a", b"weights"), mkdir("models/d"), sym("models/d/l", "../a"),
                         hard("models/h", "models/a"), reg("models/.wh.x"),
                         reg("models/" + "n" * 150, b"long"), fmt=tarfile.GNU_FORMAT,
                         compress=compress))
    for position, value in flips:
        data[position % len(data)] = value
    check_invariants([bytes(data)])


@pytest.mark.parametrize("whiteout", ["models/.wh..wh..opq", "models/.wh.d"])
def test_repeated_whiteouts_do_not_walk_the_tree_again(tmp_path, monkeypatch, whiteout):
    """Each repeat of one whiteout walked every entry its layer had made under it again: 50,000
    files and 50,000 repeats (a 400 KiB gzip layer) held root's CPU and the store lock for
    hours. The work must grow with the entries, not with entries times whiteouts."""
    n = 1500
    calls = []
    lmode = _layer._lmode
    monkeypatch.setattr(_layer, "_lmode", lambda *args: calls.append(1) or lmode(*args))
    layer = tar(mkdir("models/d"), *(reg(f"models/d/f{i}") for i in range(n)),
                *(reg(whiteout, b"") for _unused in range(n)), compress=True)
    files, error, touched = run(str(tmp_path), [tar(reg("models/d/old")), layer])
    assert error is None and not touched and "d/old" not in files and len(files) == n
    assert len(calls) < 20 * n, f"{len(calls)} lookups for {n} entries"
