"""The neuron cards page as a real headless Chromium (Debian's package) renders it, read through the
DevTools protocol (a tiny client over aiohttp's websocket, on 127.0.0.1): one card per selected
top neuron in page order, the emotion sections drawn in their colours, cards that do not overlap
or overflow the page, P bars as wide as P says and painted in the emotion's colour (pixels of a
screenshot), highlighted peak tokens, and nothing logged to the console.

The page has no scripts, so any console message (a failed load, a CSP complaint) is a failure.
Outside CI a machine without /usr/bin/chromium skips; under CI=true that is a failure (.ci/run
installs it)."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.report.cards.page import render_cards_html
from emoneurons.report.style import EMOTION_COLORS
from helpers.cards import cards_record
from helpers.environment import missing_under_ci

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0"]
WIDTH = 1200
MARK = (0xFF, 0xD5, 0x4F)  # cards_html's <mark> background


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        missing_under_ci(f"{CHROMIUM} not found (apt-get install -y chromium; .ci/run does)")
    return CHROMIUM


# What the page reports of its own layout: boxes in page pixels [x, y, width, height].
GEOMETRY_JS = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
  const all = (root, sel) => [...root.querySelectorAll(sel)];
  return JSON.stringify({
    viewport: innerWidth, scroll_width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
    sections: all(document, 'section.emotion').map(s => ({id: s.id, box: box(s), empty: all(s, 'p.empty').map(p => p.textContent)})),
    cards: all(document, 'article.card').map(c => ({
      emotion: c.closest('section').id, layer: +c.dataset.layer, index: +c.dataset.index, box: box(c),
      bars: all(c, 'svg.pbars rect').map(box), svg: box(c.querySelector('svg.pbars')),
      texts: all(c, 'svg.pbars text').map(box), marks: all(c, 'mark').map(box)})),
  });
})()"""


async def _render(chromium: str, page: Path, profile: Path) -> tuple[dict[str, Any], Any, list[str]]:
    """Load `page` at WIDTH px in a fresh headless Chromium; return its geometry, a full-page
    screenshot (PIL image, 1 px per CSS px) and every console / log message it produced."""
    import aiohttp
    from PIL import Image

    process = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"  # Chromium writes its chosen port here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, "chromium did not start its DevTools server"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                target = next(t for t in await response.json() if t["type"] == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids, messages, events = itertools.count(1), [], []

                async def call(method: str, **params: Any) -> dict[str, Any]:
                    n = next(ids)
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        message = await asyncio.wait_for(ws.receive_json(), 60)
                        if message.get("id") == n:
                            assert "error" not in message, (method, message["error"])
                            return message["result"]
                        events.append(message)

                async def until(event: str) -> None:
                    while not any(e.get("method") == event for e in events):
                        events.append(await asyncio.wait_for(ws.receive_json(), 60))

                for domain in ("Page", "Runtime", "Log"):
                    await call(f"{domain}.enable")
                await call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)
                await call("Page.navigate", url=page.as_uri())
                await until("Page.loadEventFired")
                height = json.loads((await call("Runtime.evaluate", expression=GEOMETRY_JS))["result"]["value"])["height"]
                # The whole page in the viewport: page coordinates are screenshot pixels.
                await call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)
                geometry = json.loads((await call("Runtime.evaluate", expression=GEOMETRY_JS))["result"]["value"])
                shot = await call("Page.captureScreenshot", format="png")
                for e in events:
                    if e.get("method") == "Runtime.consoleAPICalled":
                        messages.append(" ".join(str(a.get("value", a.get("description"))) for a in e["params"]["args"]))
                    elif e.get("method") in ("Log.entryAdded", "Runtime.exceptionThrown"):
                        messages.append(json.dumps(e["params"]))
        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
        return geometry, image, messages
    finally:
        process.kill()
        process.wait(timeout=30)


def render(chromium: str, page: Path, tmp_path: Path) -> tuple[dict[str, Any], Any, list[str]]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return asyncio.run(_render(chromium, page, profile))


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def overlap(a: list[float], b: list[float]) -> float:
    """Area shared by two boxes [x, y, w, h]."""
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(dx, 0.0) * max(dy, 0.0)


def share_of(image, box: list[float], colour: tuple[int, int, int]) -> float:
    """The share of the pixels inside `box` that are exactly `colour`."""
    x0, y0, w, h = (round(v) for v in box)
    counts = dict((c, n) for n, c in image.crop((x0, y0, x0 + w, y0 + h)).getcolors(maxcolors=w * h + 1) or [])
    return counts.get(colour, 0) / max(w * h, 1)


def test_a_console_error_is_caught(chromium, tmp_path):
    """The console check below can fail: a page that logs to the console is seen doing so."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><p>x</p><script>console.error("cards-boom")</script></body></html>')
    _, _, messages = render(chromium, page, tmp_path)
    assert any("cards-boom" in m for m in messages), messages


def test_cards_page_as_rendered(chromium, tmp_path, tiny_llama):
    record = cards_record(tiny_llama, empty="surprise")
    folder = tmp_path / "cards"
    folder.mkdir()
    page = folder / "index.html"
    page.write_text(render_cards_html(record), encoding="utf-8")
    geometry, image, messages = render(chromium, page, tmp_path)
    assert messages == []
    assert image.size == (WIDTH, geometry["height"])

    # One card per selected top neuron, in the record's order, each inside its emotion's section.
    expected = [(e, card["layer"], card["index"]) for e in EMOTIONS for card in record["emotions"][e]["cards"]]
    cards = geometry["cards"]
    assert [(c["emotion"], c["layer"], c["index"]) for c in cards] == expected and len(cards) == 10
    sections = {s["id"]: s for s in geometry["sections"]}
    assert list(sections) == list(EMOTIONS)
    assert sections["surprise"]["empty"] == ["No surprise neurons were selected at top_rate 0.01, so there are no cards for it."]

    # The stylesheet's layout: the page no wider than the window, the body at most 1100 px wide,
    # sections one below the other, each headed by a 3 px rule in its emotion's colour.
    assert geometry["scroll_width"] <= geometry["viewport"] == WIDTH
    tops = [s["box"][1] for s in sections.values()]
    assert tops == sorted(tops)
    for emotion, section in sections.items():
        x, y, w, _ = section["box"]
        assert 0 < w <= 1100
        rule = [x + 20, y, w - 40, 3]
        assert share_of(image, rule, rgb(EMOTION_COLORS[emotion])) > 0.95, (emotion, "section rule")

    # Cards: real boxes that do not overlap one another, within their section and the window.
    for card in cards:
        x, y, w, h = card["box"]
        assert w > 300 and h > 100 and x >= 0 and x + w <= WIDTH
        section = sections[card["emotion"]]["box"]
        assert overlap(card["box"], section) == w * h, card
    for a, b in itertools.combinations(cards, 2):
        assert overlap(a["box"], b["box"]) == 0, (a["box"], b["box"])

    for card, entry in zip(cards, (c for e in EMOTIONS for c in record["emotions"][e]["cards"])):
        # Bars: six, stacked, each starting 68 px into the chart, as wide as P says (the largest
        # 150 px), painted in its emotion's colour; its value label right of it, no label on another.
        P = [entry["P"][e] for e in EMOTIONS]
        bars, svg = card["bars"], card["svg"]
        assert len(bars) == 6 and svg[2] > 0
        for emotion, bar, value in zip(EMOTIONS, bars, P):
            assert bar[0] == pytest.approx(svg[0] + 68, abs=0.5)
            assert bar[2] == pytest.approx(150 * value / max(P), abs=0.6), (emotion, bar, value)
            assert bar[3] == pytest.approx(11, abs=0.5)
            if bar[2] >= 4:
                inner = [bar[0] + 1, bar[1] + 1, bar[2] - 2, bar[3] - 2]
                assert share_of(image, inner, rgb(EMOTION_COLORS[emotion])) > 0.95, (emotion, bar)
        assert max(bar[2] for bar in bars) == pytest.approx(150, abs=0.6)
        assert [b[1] for b in bars] == sorted(b[1] for b in bars)
        for a, b in itertools.combinations(bars, 2):
            assert overlap(a, b) == 0
        texts = card["texts"]  # emotion name, value: per bar
        for a, b in itertools.combinations(texts, 2):
            assert overlap(a, b) == 0, (a, b)
        for bar, value_label in zip(bars, texts[1::2]):
            assert value_label[0] >= bar[0] + bar[2]
        # The peak token of each context highlighted (the stylesheet's colour, not the browser's yellow).
        assert len(card["marks"]) == 3
        for mark in card["marks"]:
            assert mark[2] > 0 and share_of(image, mark, MARK) > 0.3, mark
