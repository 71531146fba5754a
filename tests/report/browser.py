"""Renders a report page in headless Chromium as a person would see it.

Usage: browser.py PAGE.html --chromium PATH --screenshot OUT.png --sections a,b,c

Prints one JSON object: for each expected section whether it is shown and how many drawn
chart marks (SVG rects with a non-zero rendered width) it has, the heatmap's cells, every
network request the page made (none is allowed: every request other than the page itself is
aborted and listed), and the console errors. The caller asserts on it.
"""
import argparse
import json
import pathlib
import sys
import tempfile

from playwright.sync_api import sync_playwright

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

MEASURE = """(ids) => ids.map((id) => {
  const section = document.getElementById(id);
  if (!section) return {id, shown: false, marks: 0, heading: null};
  const box = section.getBoundingClientRect();
  const marks = [...section.querySelectorAll('svg rect')]
    .filter((r) => r.getBoundingClientRect().width > 0 && r.getAttribute('fill') !== '#f3f5f8')
    .length;
  const heading = section.querySelector('h2');
  return {id, shown: box.height > 0 && box.width > 0, marks,
          heading: heading ? heading.textContent : null};
})"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("page")
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--sections", required=True)
    args = parser.parse_args()
    page_url = pathlib.Path(args.page).resolve().as_uri()
    requests, console_errors = [], []
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,  # a fresh --user-data-dir
            executable_path=args.chromium,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        def route(route):
            if route.request.url == page_url:
                route.continue_()
            else:
                route.abort()
        context.route("**/*", route)
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(page_url, wait_until="load")
        sections = page.evaluate(MEASURE, args.sections.split(","))
        heatmap_cells = page.locator("svg.heatmap rect.cell").count()
        scripts = page.locator("script").count()
        page.screenshot(path=args.screenshot, full_page=True)
        context.close()
    json.dump(
        {
            "sections": sections,
            "heatmapCells": heatmap_cells,
            "scripts": scripts,
            "requests": [u for u in requests if u != page_url],
            "consoleErrors": console_errors,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
