"""The load rig's HTML report (`loadtest run … --html`) viewed in a real browser: Debian's
`chromium --headless` loads the file, and the rendered DOM (`--dump-dom`) must hold the verdict
table and the SVG charts with their data points; a screenshot (`--screenshot`) must show the
charts' line colours and the PASS heading's green, so the page does not merely parse but draws.

Skips (with the reason) only when chromium is not installed (scripts/install-deps.sh installs it)."""
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from test_loadtest import RELAY_BIN, SCENARIOS, LOADTEST_BIN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def browser(*args, timeout=60):
    # --no-sandbox: CI runs as root, where chromium refuses its sandbox.
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}: {out.stderr[-2000:]}"
    return out.stdout


def png_pixels(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA non-interlaced PNG (chromium's)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, f"PNG layout {depth=} {color=} {interlace=}"
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if ftype == 1:
                line[x] = (line[x] + a) & 0xFF
            elif ftype == 2:
                line[x] = (line[x] + b) & 0xFF
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return width, height, rows


def test_html_report_renders_verdict_and_charts_in_chromium(tmp_path):
    if not os.access(LOADTEST_BIN, os.X_OK):
        pytest.fail(f"no loadtest binary at {LOADTEST_BIN}")
    html = tmp_path / "report.html"
    out = subprocess.run([LOADTEST_BIN, "run", "steady-zipkin", "--scenarios", SCENARIOS, "--relay", RELAY_BIN,
                          "--rate", "5000", "--duration", "4", "--html", str(html)],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    url = "file://" + str(html)

    dom = browser("--dump-dom", url)
    # The verdict on top: the PASS heading and the table's rows with the run's numbers.
    assert re.search(r"<h2 class=\"pass\">PASS</h2>", dom), dom[:2000]
    assert "sent / accepted / delivered" in dom and "lost / duplicated / altered / violations" in dom
    row = re.search(r"<td>lost / duplicated / altered / violations</td><td>([^<]*)</td>", dom)
    assert row and row.group(1).strip() == "0 / 0 / 0 / 0", dom[:3000]
    # Two charts, each an <svg> with polylines of real data points (≥ 3 seconds of load → ≥ 3 points).
    svgs = re.findall(r"<svg[^>]*>.*?</svg>", dom, flags=re.S)
    assert len(svgs) == 2, f"expected 2 charts, got {len(svgs)}"
    for svg in svgs:
        lines = re.findall(r"<polyline[^>]*points=\"([^\"]*)\"", svg)
        assert lines, svg[:500]
        for pts in lines:
            pairs = [tuple(map(float, p.split(","))) for p in pts.split()]
            assert len(pairs) >= 3, pts
            assert all(0 <= x <= 760 and 0 <= y <= 240 for x, y in pairs), pts
    throughput = [tuple(map(float, p.split(","))) for p in re.findall(r"<polyline[^>]*points=\"([^\"]*)\"", svgs[0])[0].split()]
    assert any(y < 150 for _, y in throughput), "the throughput line never rises above the axis"
    # The legend sits under the title, not over it.
    assert re.search(r"<text x=\"70(?:\.0)?\" y=\"14\"[^>]*>Accepted spans per second</text>", svgs[0]), svgs[0][:800]

    shot = tmp_path / "report.png"
    browser(f"--screenshot={shot}", "--window-size=900,1250", url)
    width, height, rows = png_pixels(shot)
    assert (width, height) == (900, 1250)
    counts = {}
    for row in rows:
        for px in row:
            counts[px] = counts.get(px, 0) + 1

    def pixels_near(rgb, tol=40):
        return sum(n for px, n in counts.items() if all(abs(p - q) <= tol for p, q in zip(px, rgb)))

    # A legend swatch is 10 × 10 pixels: a drawn line (2 px over ~700 px) is far more.
    assert pixels_near((0x1F, 0x77, 0xB4)) > 400, "no throughput line (#1f77b4) drawn in the screenshot"
    assert pixels_near((0xFF, 0x7F, 0x0E)) > 300, "no p99 line (#ff7f0e) drawn in the screenshot"
    assert pixels_near((0x00, 0x88, 0x00)) > 100, "no green PASS heading in the screenshot"
    keep = os.environ.get("LOADTEST_REPORT_PNG")
    if keep:  # to refresh loadtest/report-example.png
        shutil.copyfile(shot, keep)
