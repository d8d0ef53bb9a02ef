"""The drift report's HTML page as a browser shows it: headless Chromium renders it (nothing
fetched from elsewhere, the page is self-contained) and the screenshot must show the charts -
red bars for the drifted site's features, blue for the steady one's - not an empty page."""

import shutil
import subprocess

import pytest
from PIL import Image
from test_drift_report import FLEET

from ansible_collections.edgeml.fleet.plugins.filter.drift_html import drift_html
from ansible_collections.edgeml.fleet.plugins.filter.drift_report import drift_report

DRIFT_RED, STEADY_BLUE = (0xB0, 0x00, 0x20), (0x15, 0x65, 0xC0)


def _screenshot(tmp_path, page):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: `make unit` installs Debian's chromium package")
    (tmp_path / "drift.html").write_text(page)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={tmp_path / 'shot.png'}",
                    "--window-size=900,900", (tmp_path / "drift.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    with Image.open(tmp_path / "shot.png") as image:
        return image.convert("RGB")


def _pixels(image, colour):
    return sum(1 for pixel in image.getdata() if all(abs(a - b) <= 8 for a, b in zip(pixel, colour)))


def test_the_page_renders_its_charts(tmp_path):
    shot = _screenshot(tmp_path, drift_html(drift_report(FLEET)))
    assert _pixels(shot, DRIFT_RED) > 2000  # the drifted feature's long bar (and the word "drift")
    assert _pixels(shot, STEADY_BLUE) > 500  # the steady features' bars
    empty = _screenshot(tmp_path, drift_html(drift_report([])))
    assert _pixels(empty, DRIFT_RED) == 0 and _pixels(empty, STEADY_BLUE) == 0  # the check can fail
