"""Reference statistics: samples read as numpy writes them, summaries as numpy computes them,
hostile samples refused with a message, and the population stability index."""

import io
import math
import pathlib
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.edgeml.fleet.plugins.module_utils import _refstats
from ansible_collections.edgeml.fleet.plugins.module_utils._refstats import (
    SampleError, histogram, psi, read_sample, reference_stats)


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("dtype", ["<f4", "<f8", ">f4", ">i8", "<i4", "|u1", "|i1", "<u2", "|b1"])
def test_npy_is_read_as_numpy_wrote_it(tmp_path, dtype):
    data = (np.arange(24).reshape(4, 6) % 7).astype(dtype)
    (tmp_path / "s.npy").write_bytes(_npy_bytes(data))
    arrays = read_sample(tmp_path / "s.npy")
    assert list(arrays) == [None]
    name, (shape, values, names) = None, arrays[None]
    assert name is None and names is None and shape == (4, 6)
    assert list(values) == [int(v) if dtype != "|b1" else int(bool(v)) for v in data.ravel()] \
        or np.allclose(list(values), data.ravel())


def test_summaries_match_numpy(tmp_path):
    rng = np.random.default_rng(7)
    data = np.stack([rng.normal(3, 2, 5000), rng.uniform(-1, 1, 5000)], axis=1).astype("<f4")
    np.save(tmp_path / "s.npy", data)
    stats = reference_stats(tmp_path / "s.npy", bins=10, input_names=["transaction"])
    entry = stats["inputs"]["transaction"]
    assert entry["layout"] == "features" and entry["samples"] == 5000 and entry["shape"] == [2]
    for column, feature in enumerate(entry["features"]):
        values = data[:, column].astype(np.float64)
        counts, edges = np.histogram(values, bins=10)
        assert feature["count"] == 5000 and feature["nan"] == 0
        assert math.isclose(feature["mean"], values.mean(), rel_tol=1e-5, abs_tol=1e-6)
        assert math.isclose(feature["std"], values.std(), rel_tol=1e-5)
        assert feature["min"] == values.min() and feature["max"] == values.max()
        assert np.allclose(feature["edges"], edges)
        # numpy puts a value on an inner edge into the upper bin, as ours does (float rounding
        # may move one across): the same counts within one per bin.
        assert sum(feature["counts"]) == 5000
        assert max(abs(a - b) for a, b in zip(feature["counts"], counts)) <= 1


@pytest.mark.parametrize("shape,layout,channels", [
    ((5, 3, 4, 4), "channels_first", 3),
    ((5, 4, 4, 3), "channels_last", 3),
    ((5, 6, 6, 1), "channels_last", 1),
    ((5, 3, 2, 3), "channels_first", 3),
    ((5, 7), "features", 7),
    ((5,), "flat", 1),
    ((5, 2, 2), "flat", 1),
])
def test_image_batches_are_summarised_per_channel(tmp_path, shape, layout, channels):
    data = np.arange(math.prod(shape), dtype="<f4").reshape(shape)
    np.save(tmp_path / "s.npy", data)
    entry = reference_stats(tmp_path / "s.npy")["inputs"]["input"]
    assert entry["layout"] == layout and len(entry["features"]) == channels
    if layout == "channels_first":
        for channel, feature in enumerate(entry["features"]):
            assert feature["min"] == data[:, channel].min() and feature["max"] == data[:, channel].max()
            assert math.isclose(feature["mean"], data[:, channel].mean(), rel_tol=1e-6)
    if layout == "channels_last":
        for channel, feature in enumerate(entry["features"]):
            assert feature["min"] == data[..., channel].min() and feature["max"] == data[..., channel].max()


def test_csv_with_a_header_names_the_features(tmp_path):
    (tmp_path / "s.csv").write_text("amount,age\n1,20\n2.5,30\n4,40\n")
    entry = reference_stats(tmp_path / "s.csv", bins=3)["inputs"]["input"]
    assert [f["name"] for f in entry["features"]] == ["amount", "age"]
    assert entry["features"][1]["counts"] == [1, 1, 1] and entry["features"][0]["max"] == 4


def test_npz_names_each_input_and_a_stranger_is_refused(tmp_path):
    np.savez(tmp_path / "s.npz", image=np.zeros((2, 3, 2, 2), "<f4"), mask=np.ones((2, 4), "<f4"))
    stats = reference_stats(tmp_path / "s.npz", input_names=["image", "mask"])
    assert set(stats["inputs"]) == {"image", "mask"} and stats["source"] == "s.npz"
    with pytest.raises(SampleError, match="'mask' is not an input of the model"):
        reference_stats(tmp_path / "s.npz", input_names=["image"])
    np.save(tmp_path / "one.npy", np.zeros((2, 2), "<f4"))
    with pytest.raises(SampleError, match="one array for a model with inputs"):
        reference_stats(tmp_path / "one.npy", input_names=["image", "mask"])


def test_nan_and_constant_features(tmp_path):
    data = np.array([[1.0, np.nan], [1.0, 2.0], [1.0, np.inf]], "<f8")
    np.save(tmp_path / "s.npy", data)
    constant, holes = reference_stats(tmp_path / "s.npy")["inputs"]["input"]["features"]
    assert constant["edges"] == [1.0, 1.0] and constant["counts"] == [3] and constant["std"] == 0
    assert holes["nan"] == 2 and holes["count"] == 1  # NaN and inf: counted apart, not binned


# --- hostile samples: each refused with a message naming the file, nothing else read -------
def _header(descr="'<f4'", fortran="False", shape="(2,)"):
    text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@pytest.mark.parametrize("data,message", [
    (b"PK\x03\x04not numpy", "no NUMPY magic"),
    (_header(descr="'|O'") + b"\0" * 16, "never read"),
    (_header(descr="'<c16'") + b"\0" * 32, "not a plain number type"),
    (_header(fortran="True", shape="(2, 2)") + b"\0" * 16, "Fortran order"),
    (_header(shape="(2, -1)") + b"\0" * 8, "not a tuple of sizes"),
    (_header(shape="()") + b"\0" * 4, "not a tuple of sizes"),
    (_header(shape="(1000000000, 1000000000)") + b"\0" * 8, "more than 4194304 values"),
    (_header(shape="(3,)") + b"\0" * 8, "needs 12 bytes, the file has 8"),
    (_header(descr="__import__('os').system('true')") + b"", "not a literal dict"),
    (b"\x93NUMPY\x01\x00\xff\xff" + b"{}", "runs past the file"),
    (b"\x93NUMPY\x09\x00\x00\x00", "format version 9"),
])
def test_hostile_npy_is_refused(tmp_path, data, message):
    (tmp_path / "s.npy").write_bytes(data)
    with pytest.raises(SampleError, match=message) as caught:
        read_sample(tmp_path / "s.npy")
    assert "s.npy" in str(caught.value)


class _TouchWhenUnpickled:
    """An object whose unpickling creates a file: what a hostile pickled sample would run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def test_a_pickled_npy_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    np.save(tmp_path / "s.npy", np.array([_TouchWhenUnpickled(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(SampleError, match="object arrays are never read"):
        read_sample(tmp_path / "s.npy")
    assert not marker.exists()
    np.load(tmp_path / "s.npy", allow_pickle=True)  # the control: unpickling it does run code
    assert marker.exists()


def test_npz_members_that_are_paths_or_bombs_are_refused(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "path.npz", "w") as archive:
        archive.writestr("../evil.npy", _npy_bytes(np.zeros(2, "<f4")))
    with pytest.raises(SampleError, match="not a plain NAME.npy"):
        read_sample(tmp_path / "path.npz")
    monkeypatch.setattr(_refstats, "MAX_SAMPLE_BYTES", 4096)
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.npy", _npy_bytes(np.zeros(100_000, "<f4")))
    with pytest.raises(SampleError, match="more than 4096 bytes unpacked"):
        read_sample(tmp_path / "bomb.npz", limit=_refstats.MAX_SAMPLE_BYTES)


def test_few_bytes_cannot_ask_for_many_values(tmp_path):
    """32 MiB of one-byte zeros compress into 32 KB: the values, not the bytes, are capped, and
    before anything is unpacked or summarised."""
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", _npy_bytes(np.zeros(32 << 20, "|u1")))
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000
    with pytest.raises(SampleError, match="more than 4194304 values"):
        read_sample(tmp_path / "bomb.npz")
    (tmp_path / "s.npy").write_bytes(_header(descr="'|u1'", shape="(" + "9" * 3000 + ",)"))
    with pytest.raises(SampleError, match="more than 4194304 values"):
        read_sample(tmp_path / "s.npy")


def _zip_with(path, payload, mangle):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", payload)
    raw = bytearray(path.read_bytes())
    mangle(raw, raw.rfind(b"PK\x01\x02"))
    path.write_bytes(bytes(raw))


def _encrypted(raw, central):
    raw[6] |= 1
    raw[central + 8] |= 1


def _unknown_method(raw, central):
    raw[8:10] = raw[central + 10:central + 12] = (99).to_bytes(2, "little")


def _corrupt(raw, _central):
    for i in range(40, 60):
        raw[i] ^= 0xFF


@pytest.mark.parametrize("mangle", [_encrypted, _unknown_method, _corrupt])
def test_npz_that_zipfile_cannot_unpack_is_refused_with_a_message(tmp_path, mangle):
    _zip_with(tmp_path / "s.npz", _npy_bytes(np.arange(500, dtype="<f8")), mangle)
    with pytest.raises(SampleError, match="not a readable .npz"):
        read_sample(tmp_path / "s.npz")


@pytest.mark.parametrize("header", ["{[1]: 2}", "{'descr': {[]}}"])
def test_an_unhashable_header_is_refused(tmp_path, header):
    text = header.encode()
    (tmp_path / "s.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text)
    with pytest.raises(SampleError, match="not a literal dict"):
        read_sample(tmp_path / "s.npy")


def test_huge_values_and_long_csv_fields(tmp_path):
    np.save(tmp_path / "s.npy", np.array([[1e308, 1.0], [-1.7e308, 2.0], [1e200, 3.0]], "<f8"))
    huge, plain = reference_stats(tmp_path / "s.npy")["inputs"]["input"]["features"]
    assert huge["nan"] == 3 and huge["count"] == 0  # beyond 1e150: counted, not summarised
    assert plain["count"] == 3 and plain["mean"] == 2.0
    (tmp_path / "s.csv").write_text("a\n" + "1" * 200_000 + "\n")
    with pytest.raises(SampleError, match="not CSV"):
        read_sample(tmp_path / "s.csv")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(SampleError, match="not a readable .npz"):
        read_sample(tmp_path / "broken.npz")


def test_other_files_and_bad_csv_are_refused(tmp_path):
    (tmp_path / "s.parquet").write_bytes(b"PAR1")
    with pytest.raises(SampleError, match="an .npy, .npz or .csv file"):
        read_sample(tmp_path / "s.parquet")
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(SampleError, match="line 3: 1 columns, the first row has 2"):
        read_sample(tmp_path / "s.csv")
    (tmp_path / "s.csv").write_text("a,b\n1,x\n")
    with pytest.raises(SampleError, match="line 2: not a number"):
        read_sample(tmp_path / "s.csv")
    with pytest.raises(SampleError, match="cannot read the reference sample"):
        read_sample(tmp_path / "none.npy")
    with pytest.raises(SampleError, match="bins must be 1 to 100"):
        reference_stats(tmp_path / "s.csv", bins=0)


def test_a_sample_over_the_cap_is_refused_without_reading_it_all(tmp_path):
    (tmp_path / "s.csv").write_text("1\n" * 5000)
    with pytest.raises(SampleError, match="more than 1000 bytes"):
        read_sample(tmp_path / "s.csv", limit=1000)


# --- drift ----------------------------------------------------------------------------------
counts = st.lists(st.integers(0, 10_000), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(counts, st.randoms())
def test_psi_is_zero_for_the_same_distribution_and_never_negative(reference, rnd):
    live = [rnd.randint(0, 10_000) for _count in reference]
    same = psi(reference, [c * 3 for c in reference])
    other = psi(reference, live)
    if sum(reference) and sum(live):
        assert same == 0 and other >= 0
    else:
        assert other is None or same is None


def test_psi_flags_a_shift():
    reference = np.random.default_rng(1).normal(0, 1, 20_000)
    edges = list(np.histogram(reference, bins=10)[1])
    ref_counts = histogram(reference.tolist(), edges)
    steady = histogram(np.random.default_rng(2).normal(0, 1, 5000).tolist(), edges)
    shifted = histogram(np.random.default_rng(3).normal(1.0, 1, 5000).tolist(), edges)
    assert psi(ref_counts, steady) < 0.05 < 0.2 < psi(ref_counts, shifted)
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=False, width=32), min_size=1, max_size=200),
       st.integers(1, 20))
def test_every_finite_value_lands_in_exactly_one_bin(values, bins):
    summary = _refstats.summarize(values, bins)
    finite = [v for v in values if not math.isnan(v)]
    assert summary["nan"] == len(values) - len(finite)
    assert sum(summary["counts"]) == len(finite) == summary["count"]
    if finite:
        assert summary["min"] == min(finite) and summary["max"] == max(finite)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=2, max_size=100),
       st.lists(st.floats(-2e6, 2e6, width=32), min_size=1, max_size=300),
       st.integers(1, 30))
def test_the_server_bins_live_values_as_the_reference_was_binned(sample, live, bins):
    """The inference server's running histogram (numpy, in batches) and the reference's
    (pure Python) put every value in the same bin: their counts compare bin by bin."""
    from edgeml_serve.stats import FeatureTable  # pylint: disable=import-outside-toplevel
    edges = _refstats.summarize(sample, bins)["edges"]
    table = FeatureTable("flat", 1, {"features": [{"edges": edges}]})
    for start in range(0, len(live), 7):
        table.observe(np.array(live[start:start + 7], np.float32))
    served = table.report()["features"][0]
    assert served["counts"] == histogram([float(np.float32(v)) for v in live], edges)
