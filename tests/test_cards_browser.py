"""The neuron cards page in a real headless Chromium (Debian's package): it renders, has one card
per selected top neuron, says when an emotion has none, and logs nothing to the console.

The page has no scripts, so any console message (a failed load, a CSP complaint) is a failure.
Outside CI a machine without /usr/bin/chromium skips; under CI=true that is a failure (.ci/run
installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.report.cards_html import render_cards_html
from test_cards import cards_record

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} not found: CI must install Debian's chromium (.ci/run does)")
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium); required under CI=true")
    return CHROMIUM


def browse(chromium: str, page: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *mode, page.as_uri()],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]


def test_a_console_error_is_caught(chromium, tmp_path):
    """The check below can fail: a page that logs to the console is seen doing so."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><p>x</p><script>console.error("cards-boom")</script></body></html>')
    result = browse(chromium, page, tmp_path, "--dump-dom")
    assert any("cards-boom" in line for line in console_messages(result.stderr)), result.stderr[-2000:]


def test_cards_page_renders_one_card_per_neuron_without_console_errors(chromium, tmp_path, tiny_llama):
    record = cards_record(tiny_llama, empty="surprise")
    folder = tmp_path / "cards"
    folder.mkdir()
    page = folder / "index.html"
    page.write_text(render_cards_html(record), encoding="utf-8")

    dom = browse(chromium, page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    html = dom.stdout
    expected = [(card["layer"], card["index"]) for e in EMOTIONS for card in record["emotions"][e]["cards"]]
    found = [(int(a), int(b)) for a, b in re.findall(r'<article class="card"[^>]*data-layer="(\d+)" data-index="(\d+)"', html)]
    assert found == expected and len(found) == 10
    for emotion in EMOTIONS:
        assert f'id="{emotion}"' in html
    assert "No surprise neurons were selected" in html
    assert html.count("<mark>") == 30 and html.count("<svg") == 10

    shot = tmp_path / "cards.png"
    drawn = browse(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars")
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert console_messages(drawn.stderr) == []
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    # Rendered text, bars and highlights: far more than a blank page's one or two colours.
    assert colours is not None and len(colours) > 50
