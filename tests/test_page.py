"""The draw-a-digit page in real headless Chromium against a real server: curved mouse
strokes, touch, an upload, a whole number; screenshots at desktop and phone sizes."""

import math
import os
from pathlib import Path

import pytest
from digits import on_paper


def arc(cx, cy, rx, ry, start, end, n=18):
    """Points along an ellipse arc, angles in degrees (screen y points down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in (start + (end - start) * i / (n - 1) for i in range(n))]


DIGITS = {  # strokes in a unit box, drawn the way a hand would
    "3": [arc(0.5, 0.32, 0.18, 0.15, -160, 90) + arc(0.5, 0.64, 0.2, 0.17, -90, 160)[1:]],
    "6": [[(0.64, 0.14), (0.52, 0.24), (0.42, 0.38), (0.36, 0.54)]
          + arc(0.51, 0.68, 0.15, 0.15, 180, -180, 24)],
    "2": [arc(0.5, 0.33, 0.18, 0.16, -165, 15) + [(0.45, 0.6), (0.3, 0.82), (0.74, 0.82)]],
    "1": [[(0.52, 0.15), (0.5, 0.5), (0.49, 0.86)]],
    "4": [[(0.55, 0.15), (0.3, 0.6), (0.76, 0.6)], [(0.63, 0.35), (0.63, 0.88)]],
    "7": [[(0.28, 0.18), (0.72, 0.18), (0.58, 0.5), (0.45, 0.86)]],
}


def strokes_in(box, digit, slot=0, slots=1):
    """Page coordinates of a digit's strokes in ``slot`` of ``slots`` across the canvas."""
    left = box["x"] + box["width"] * (slot + 0.08) / slots
    width = box["width"] * 0.84 / slots
    side = min(width, box["height"] * 0.8)
    x0 = left + (width - side) / 2
    y0 = box["y"] + (box["height"] - side) / 2
    return [[(x0 + x * side, y0 + y * side) for x, y in s] for s in DIGITS[digit]]


def draw_mouse(page, strokes):
    for stroke in strokes:
        page.mouse.move(*stroke[0])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(x, y, steps=3)
        page.mouse.up()


def shows(page, text):
    page.wait_for_function(f"document.getElementById('digit').textContent === {text!r}",
                           timeout=15_000)


def shoot(page, name, tmp_path):
    out = Path(os.environ.get("DIGITLAB_SCREENSHOTS", tmp_path)) / f"page-{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    return out


@pytest.fixture
def desktop(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server + "/")
    yield page
    page.close()


@pytest.mark.parametrize("digit", ["3", "6"])
def test_curved_mouse_strokes(desktop, digit, tmp_path):
    box = desktop.locator("#canvas").bounding_box()
    draw_mouse(desktop, strokes_in(box, digit))
    shows(desktop, digit)
    bars = desktop.eval_on_selector_all(".bar i", "els => els.map(e => parseFloat(e.style.height))")
    assert len(bars) == 10 and max(bars) == bars[int(digit)]
    assert desktop.get_attribute("#seen", "src").startswith("data:image/png")
    assert shoot(desktop, f"desktop-{digit}", tmp_path).stat().st_size > 20_000
    desktop.click("#clear")
    shows(desktop, "?")


def test_undo(desktop):
    box = desktop.locator("#canvas").bounding_box()
    draw_mouse(desktop, strokes_in(box, "1"))
    shows(desktop, "1")
    draw_mouse(desktop, [[(box["x"] + 5, box["y"] + 5), (box["x"] + box["width"] - 5,
                                                          box["y"] + box["height"] - 5)]])
    desktop.click("#undo")
    shows(desktop, "1")


def test_touch_on_a_phone(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True, device_scale_factor=2)
    page = context.new_page()
    page.goto(server + "/")
    cdp = context.new_cdp_session(page)
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes_in(box, "2"):
        x, y = stroke[0]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart",
                                              "touchPoints": [{"x": x, "y": y}]})
        for x, y in stroke[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                                  "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    shows(page, "2")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(page, "phone-2", tmp_path)
    context.close()


def test_upload_an_image(desktop, tmp_path):
    path = tmp_path / "five.jpg"
    on_paper([5], k=2, paper=(250, 236, 140), ink=(25, 40, 150)).save(path, quality=50)
    desktop.set_input_files("#file", str(path))
    shows(desktop, "5")
    (tmp_path / "notes.txt").write_text("not an image")
    desktop.set_input_files("#file", str(tmp_path / "notes.txt"))
    desktop.wait_for_function("document.getElementById('note').className.includes('error')",
                              timeout=15_000)
    assert desktop.text_content("#digit") == "?", "the failed upload's answer is not the 5's"
    assert "not an image" in desktop.text_content("#note")


def test_a_three_digit_number(desktop, tmp_path):
    desktop.click("#mode-number")
    box = desktop.locator("#canvas").bounding_box()
    assert box["width"] > 2.5 * box["height"], "a wide canvas for a number"
    for slot, digit in enumerate("147"):
        draw_mouse(desktop, strokes_in(box, digit, slot, 3))
    shows(desktop, "147")
    assert desktop.locator(".chip").count() == 3
    shoot(desktop, "desktop-number", tmp_path)


def test_api_docs_render_offline(browser, server):
    """/docs is Swagger UI with its scripts served by digitlab: this browser reaches nothing
    but 127.0.0.1 (see conftest), as on a machine with no internet."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(server + "/docs")
        page.wait_for_selector(".opblock", timeout=15_000)  # the operations, rendered
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => "
                                          "e.textContent)")
        assert {"/v1/predict", "/v1/read", "/v1/models"} <= {p.strip() for p in paths}
    finally:
        page.close()
