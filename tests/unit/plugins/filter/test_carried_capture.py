"""Capture carried home from a disconnected site: the host's files as its result report lists them
(capture_files), and the files on the medium the monitor may take into its dataset
(carried_capture). The medium is hostile: only files at the path and with the sha256 their host's
report gives are taken, and no crafted name yields a dataset path outside the dataset."""

import hashlib
import posixpath
from pathlib import Path

from hypothesis import given, settings, strategies as st

from ansible_collections.edgeml.fleet.plugins.filter.capture_files import capture_files
from ansible_collections.edgeml.fleet.plugins.filter.carried_capture import carried_capture

HEX = "b" * 64
ROOT = "/results/capture"


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _found(path, text="x\n"):
    return {"path": path, "size": len(text), "checksum": _sha(text), "mtime": 1.0}


def _report(host="c1", site="site-c", *files, reported_at="2026-11-27T01:02:03Z"):
    return {"host": host, "site": site, "reported_at": reported_at, "capture": list(files)}


def test_the_host_lists_only_the_servers_capture_files():
    listed = capture_files([
        _found(f"/var/lib/edgeml/capture/fraud/{HEX}/20261127T010203Z-1.jsonl"),
        _found(f"/var/lib/edgeml/capture/fraud/{HEX}/notes.txt"),
        _found(f"/var/lib/edgeml/capture/fraud/{HEX}/.hidden.jsonl"),
        _found("/var/lib/edgeml/capture/fraud/short/x.jsonl"),
        "not a dict"])
    assert listed == [{"path": f"/var/lib/edgeml/capture/fraud/{HEX}/20261127T010203Z-1.jsonl",
                       "file": f"fraud/{HEX}/20261127T010203Z-1.jsonl", "model": "fraud",
                       "version": f"sha256:{HEX}", "bytes": 2, "sha256": _sha("x\n"), "modified": 1.0}]


def test_a_listed_file_with_its_sha256_goes_into_the_dataset_dated():
    entry = capture_files([_found(f"/var/lib/edgeml/capture/fraud/{HEX}/a.jsonl")])[0]
    out = carried_capture([_found(f"{ROOT}/c1/fraud/{HEX}/a.jsonl")], reports=[_report("c1", "site-c", entry)], root=ROOT)
    assert out["warnings"] == []
    assert out["files"] == [{"src": f"{ROOT}/c1/fraud/{HEX}/a.jsonl", "file": f"site-c/fraud/{HEX}/c1/a.jsonl",
                             "site": "site-c", "host": "c1", "model": "fraud", "version": f"sha256:{HEX}",
                             "bytes": 2, "sha256": _sha("x\n"), "modified": 1.0,
                             "reported_at": "2026-11-27T01:02:03Z", "source": "result report"}]


def test_altered_unlisted_misplaced_and_missing_files_are_left_out_with_a_warning():
    entry = {"file": f"fraud/{HEX}/a.jsonl", "sha256": _sha("x\n")}
    missing = {"file": f"fraud/{HEX}/gone.jsonl", "sha256": _sha("y\n")}
    out = carried_capture([
        _found(f"{ROOT}/c1/fraud/{HEX}/a.jsonl", "altered\n"),         # content is not the listed one
        _found(f"{ROOT}/c1/fraud/{HEX}/b.jsonl"),                      # not listed
        _found(f"{ROOT}/c2/fraud/{HEX}/a.jsonl"),                      # another host, no report
        _found(f"{ROOT}/c1/x/fraud/{HEX}/a.jsonl"),                    # one level too deep
        _found(f"/elsewhere/c1/fraud/{HEX}/a.jsonl"),                  # outside the root
    ], reports=[_report("c1", "site-c", entry, missing)], root=ROOT)
    assert out["files"] == []
    assert len(out["warnings"]) == 6
    assert any("sha256" in w for w in out["warnings"])
    assert any("gone.jsonl: listed in its result report, not carried home" in w for w in out["warnings"])


def test_an_entry_without_a_sha256_takes_nothing():
    found = {"path": f"{ROOT}/c1/fraud/{HEX}/a.jsonl", "size": 2, "mtime": 1.0}  # no checksum either
    out = carried_capture([found], reports=[_report("c1", "site-c", {"file": f"fraud/{HEX}/a.jsonl"})], root=ROOT)
    assert out["files"] == []


def test_round_trip_through_a_real_directory(tmp_path):
    """What the bootstrap fetches (capture/<host>/<file>) is what the monitor takes."""
    host_dir = tmp_path / "host" / "fraud" / HEX
    host_dir.mkdir(parents=True)
    (host_dir / "t1.jsonl").write_text('{"a": 1}\n')
    found_on_host = [{"path": str(host_dir / "t1.jsonl"), "size": 9, "mtime": 5.0,
                      "checksum": _sha('{"a": 1}\n')}]
    entries = capture_files(found_on_host)
    root = tmp_path / "results" / "capture"
    for entry in entries:
        dest = root / "c1" / entry["file"]
        dest.parent.mkdir(parents=True)
        dest.write_bytes(Path(entry["path"]).read_bytes())
    found = [{"path": str(p), "size": 9, "checksum": _sha(p.read_text())} for p in root.rglob("*") if p.is_file()]
    out = carried_capture(found, reports=[_report("c1", "site-c", *entries)], root=str(root))
    assert [f["file"] for f in out["files"]] == [f"site-c/fraud/{HEX}/c1/t1.jsonl"]
    assert out["warnings"] == []


SEGMENT = st.sampled_from(["..", ".", "", "c1", "fraud", HEX, "a.jsonl", "../a.jsonl", "/", "x/../..",
                           "a\x00.jsonl", "..jsonl", "c1-a.jsonl"]) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(found_parts=st.lists(st.lists(SEGMENT, min_size=1, max_size=6), max_size=6),
       listed=st.lists(st.lists(SEGMENT, min_size=1, max_size=4), max_size=6),
       hosts=st.lists(SEGMENT, min_size=1, max_size=3))
def test_no_crafted_name_leads_out_of_the_dataset(found_parts, listed, hosts):
    found = [_found(ROOT + "/" + "/".join(parts)) for parts in found_parts]
    reports = [_report(host, "site-c", *[{"file": "/".join(parts), "sha256": _sha("x\n")} for parts in listed])
               for host in hosts]
    out = carried_capture(found, reports=reports, root=ROOT)
    for entry in out["files"]:
        parts = entry["file"].split("/")
        assert len(parts) == 5 and parts[0] == "site-c"
        assert posixpath.normpath(entry["file"]) == entry["file"]
        assert not any(p in ("", ".", "..") for p in parts) and "\x00" not in entry["file"]
        assert entry["src"].startswith(ROOT + "/") and posixpath.normpath(entry["src"]) == entry["src"]
        assert entry["host"] in hosts and parts[3] == entry["host"]
    assert len(out["files"]) <= len(found)


def test_odd_values_in_a_report_do_not_break_the_run():
    """A 400-digit time, a report with no site, thousands of unlisted files: taken or warned
    about, never an exception that would stop the monitor before it writes its report."""
    entry = {"file": f"fraud/{HEX}/a.jsonl", "sha256": _sha("x\n"), "modified": 10 ** 400}
    report = {"host": "c1", "reported_at": ["not", "text"], "capture": [entry]}
    stray = [_found(f"{ROOT}/c1/fraud/{HEX}/s{n}.jsonl") for n in range(500)]
    out = carried_capture([_found(f"{ROOT}/c1/fraud/{HEX}/a.jsonl")] + stray, reports=[report], root=ROOT)
    assert [(f["file"], f["modified"]) for f in out["files"]] == [(f"-/fraud/{HEX}/c1/a.jsonl", None)]
    assert len(out["warnings"]) == 21 and out["warnings"][-1] == "... and 480 more"


def test_a_copy_that_changed_on_the_way_is_not_taken():
    """The medium can change between the find and the copy: only copies that are regular files
    with the listed sha256 stay in the dataset's list."""
    entries = [{"file": f"fraud/{HEX}/{n}.jsonl", "sha256": _sha("x\n")} for n in ("a", "b", "c")]
    found = [_found(f"{ROOT}/c1/fraud/{HEX}/{n}.jsonl") for n in ("a", "b", "c")]
    taken = carried_capture(found, reports=[_report("c1", "site-c", *entries)], root=ROOT)["files"]
    stats = {"a": {"isreg": True, "islnk": False, "checksum": _sha("x\n")},
             "b": {"isreg": True, "islnk": False, "checksum": _sha("swapped\n")},
             "c": {"isreg": False, "islnk": True}}
    copied = [{"item": entry, "stat": stats[entry["file"].rsplit("/", 1)[1][0]]} for entry in taken]
    out = carried_capture(found, reports=[_report("c1", "site-c", *entries)], root=ROOT, copied=copied)
    assert [f["file"] for f in out["files"]] == [f"site-c/fraud/{HEX}/c1/a.jsonl"]
    assert len([w for w in out["warnings"] if "removed" in w]) == 2
