#!/usr/bin/env python3
"""The tape explorer page in a real browser.

Writes the pages of the seed's network (with the writer program), opens one in headless Chromium
and drives it over the DevTools protocol, the way a reader would: clicks a node (a row of the
listing on the listing-only page) and checks the adjoint shown against the tape's; goes back to the
seed and replays the sweep step by step (arrow keys, or the step button on the listing-only page),
checking that the deltas fill in from the last layer down; at the end searches every layer<l>.z
by name and checks the delta shown against the tape's; asserts that the page raised no script
error and logged no error; saves a screenshot.

The protocol runs over a pipe (--remote-debugging-pipe: JSON messages ended by a NUL byte on file
descriptors 3 and 4), so only the standard library is needed: no websocket client, no port.

Exit status: 0 passed, 1 failed, 77 skipped (no Chromium).
"""
import argparse
import base64
import fcntl
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
TIMEOUT = 90.0  # seconds for the whole browser session


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Browser:
    """Headless Chromium with the DevTools protocol on a pipe."""

    def __init__(self, exe, log_path, window):
        self.profile = tempfile.mkdtemp(prefix="deltagrad-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        # Copies at high descriptors, so that placing them at 3 and 4 in the child cannot clobber one
        # with the other.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)

        def place_pipes():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [exe, "--headless", "--disable-gpu", "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-dev-shm-usage", "--mute-audio",
                f"--window-size={window[0]},{window[1]}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     preexec_fn=place_pipes, pass_fds=(3, 4), start_new_session=True)
        for fd in (to_child_r, from_child_w, hi_r, hi_w):
            os.close(fd)
        self.deadline = time.monotonic() + TIMEOUT
        self.buffer = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the browser and every process it started
        except ProcessLookupError:
            pass
        self.proc.wait()
        for fd in (self.to_child, self.from_child):
            os.close(fd)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self):
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            check(left > 0, f"the browser did not answer within {TIMEOUT:.0f} s")
            ready, _, _ = select.select([self.from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_child, 1 << 16)
            check(chunk, "the browser closed the DevTools pipe (it exited?)")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session=True):
        """Sends a command and returns its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                check("error" not in reply, f"{method} failed: {reply.get('error')}")
                return reply["result"]
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method):
        while True:
            for k, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(k)
            self.events.append(self._read_message())

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        check("exceptionDetails" not in result,
              f"evaluating {expression!r} threw: {json.dumps(result.get('exceptionDetails'))[:600]}")
        return result["result"].get("value")

    def click(self, x, y):
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent",
                      {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def key(self, key, code, keycode, text=None):
        down = {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": keycode}
        if text:
            down["text"] = text
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code,
                                             "windowsVirtualKeyCode": keycode})

    def errors(self):
        """Script exceptions and error messages the page produced so far."""
        found = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.exceptionThrown":
                found.append("exception: " + json.dumps(p.get("exceptionDetails"))[:800])
            elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append("console." + p["type"] + ": " + json.dumps(p.get("args"))[:800])
            elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                found.append("log: " + p["entry"].get("text", ""))
        return found


def open_page(browser, path):
    """Navigates to a file and waits until it has loaded (and it is that file that has)."""
    url = pathlib.Path(path).as_uri()
    browser.send("Page.navigate", {"url": url})
    browser.wait_event("Page.loadEventFired")
    while not browser.evaluate(f"document.readyState === 'complete' && location.href === {json.dumps(url)}"):
        check(time.monotonic() < browser.deadline, f"{url} did not load")
        time.sleep(0.05)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def same(shown, expected):
    """The page shows each element in full (shortest round-trip text), so it must read back to exactly
    the tape's double."""
    return len(shown) == len(expected) and all(float(s) == e for s, e in zip(shown, expected))


def run(args):
    exe = find_chromium()
    if not exe:
        print("SKIPPED: Chromium is not installed (apt-get install chromium; scripts/setup.sh test installs it)")
        return SKIP
    os.makedirs(args.out, exist_ok=True)
    subprocess.run([args.writer, args.out], check=True, timeout=60)
    with open(os.path.join(args.out, "expected.json")) as f:
        expected = json.load(f)
    page = os.path.abspath(os.path.join(args.out, args.page))
    layers = expected["layers"]
    named = expected["named"]

    window = [int(v) for v in args.window.split("x")]
    browser = Browser(exe, os.path.join(args.out, "chromium.log"), window)
    try:
        # A page target of our own, attached in flat mode (one pipe, commands tagged by session).
        target = browser.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        browser.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                       session=False)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            browser.send(domain)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False})
        open_page(browser, page)

        def no_errors(when):
            browser.evaluate("0")  # a round trip, so that events of what was done before have arrived
            errors = browser.errors()
            check(not errors, f"the page reported errors {when}:\n" + "\n".join(errors))

        no_errors("while loading")

        has_graph = browser.evaluate("!document.body.classList.contains('no-graph')")
        note = browser.evaluate("(n => n.hidden ? '' : n.textContent)(document.getElementById('note'))")
        if args.page == "seed-listing.html":
            check(not has_graph and note.startswith("Listing only"),
                  f"the listing-only page should say so: graph {has_graph}, note {note!r}")
        elif not has_graph:
            print(f"note: no graph in the page ({note}); testing the listing")
        print(f"loaded {page}: graph {'yes' if has_graph else 'no'}")
        last = int(browser.evaluate("document.getElementById('step-label').textContent").split()[-1])
        check(last > 0, "the page has no backward steps")

        def detail():
            return browser.evaluate("""(() => ({
                title: document.querySelector('#detail h2')?.textContent || '',
                adjoint: [...document.querySelectorAll('#detail .adjoint td.el')].map(td => td.textContent),
                empty: document.querySelector('#detail .adjoint .hint')?.textContent || '',
                contributions: document.querySelectorAll('#detail table.contributions > tr').length
            }))()""")

        # 1. Click layer2.z (a node of the graph, or its row of the listing) and read its adjoint.
        name = "layer2.z"
        entry = named[name]["entry"]
        where = f"#graph-view g.node[data-entry='{entry}']" if has_graph else f"#listing tr[data-entry='{entry}']"
        x, y = browser.evaluate(f"""(() => {{
            const el = document.querySelector("{where}");
            el.scrollIntoView({{block: 'center', inline: 'center'}});
            const r = el.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        }})()""")
        browser.click(x, y)
        no_errors(f"after a click on {name}")
        shown = detail()
        check(name in shown["title"], f"clicking {name} shows {shown['title']!r}")
        check(same(shown["adjoint"], named[name]["adjoint"]),
              f"adjoint of {name}: page shows {shown['adjoint']}, the tape has {named[name]['adjoint']}")
        check(shown["contributions"] > 0, f"no contributions listed for {name}")
        print(f"clicked {name}: adjoint {shown['adjoint']} equals the tape's")
        # Its first argument (layer1.a) is a link to that entry.
        browser.evaluate("document.querySelector('#detail .line button.link').click()")
        check(detail()["title"].startswith(f"#{named['layer1.a']['entry']} layer1.a"),
              f"the argument link of {name} shows {detail()['title']!r}")

        # 2. Back to the seed, then the sweep one step at a time: each delta appears once its layer's
        #    step has run, the last layer's first.
        deltas = [f"layer{l}.z" for l in range(1, layers + 1)]
        reached_js = "[" + ",".join(
            f"document.querySelector(\"#listing tr[data-entry='{named[d]['entry']}'] td.adj\").textContent !== '—'"
            for d in deltas) + "]"

        def step_on():
            if has_graph:
                browser.key("ArrowRight", "ArrowRight", 39)
            else:
                x, y = browser.evaluate("""(() => { const r = document.getElementById('next').getBoundingClientRect();
                                           return [r.x + r.width / 2, r.y + r.height / 2]; })()""")
                browser.click(x, y)

        if has_graph:
            browser.key("Home", "Home", 36)
        else:
            browser.evaluate("document.getElementById('first').click()")
        check(browser.evaluate("document.getElementById('step-label').textContent") == f"step 0 of {last}",
              "Home does not go back to the seed")
        check(browser.evaluate(reached_js) == [False] * layers, "deltas are shown before any step ran")
        check(detail()["empty"] != "", f"{name}'s adjoint is shown at the seed")
        first_seen = {}
        for k in range(1, last + 1):
            step_on()
            label = browser.evaluate("document.getElementById('step-label').textContent")
            check(label == f"step {k} of {last}", f"after {k} steps the page says {label!r}")
            for d, now in zip(deltas, browser.evaluate(reached_js)):
                if now and d not in first_seen:
                    first_seen[d] = k
        no_errors("while stepping")
        check(len(first_seen) == layers, f"deltas never shown during the replay: {set(deltas) - set(first_seen)}")
        order = [first_seen[d] for d in reversed(deltas)]
        check(order == sorted(order) and len(set(order)) == layers,
              f"deltas should fill in from the last layer down, steps: {first_seen}")
        check(browser.evaluate("document.getElementById('next').disabled"), "the step button is enabled at the end")
        print(f"replayed {last} steps: deltas appeared at steps {first_seen}")

        # 3. At the end, every delta found by name shows the tape's adjoint.
        for d in deltas:
            browser.evaluate("(() => { const s = document.getElementById('search'); s.value = ''; s.focus(); })()")
            browser.send("Input.insertText", {"text": d})
            browser.key("Enter", "Enter", 13, "\r")
            shown = detail()
            check(shown["title"].startswith(f"#{named[d]['entry']} {d}"), f"searching {d} shows {shown['title']!r}")
            check(same(shown["adjoint"], named[d]["adjoint"]),
                  f"delta {d}: page shows {shown['adjoint']}, the tape has {named[d]['adjoint']}")
        print(f"every delta shown equals the tape's: {', '.join(deltas)}")

        # 4. A screenshot in mid-replay: layer 2's matmul step highlighted, layer1.a selected.
        browser.evaluate("""(() => { const s = document.getElementById('search'); s.value = '';
                            s.dispatchEvent(new Event('input')); s.blur(); })()""")
        browser.evaluate("document.getElementById('first').click()")
        for _ in range(first_seen[deltas[0]] - 1 if layers > 1 else 0):
            step_on()
        browser.evaluate(f"document.querySelector(\"#listing tr[data-entry='{named['layer1.a']['entry']}']\").click()")
        shot = browser.send("Page.captureScreenshot", {"format": "png"})
        png = os.path.join(args.out, args.page.replace(".html", ".png"))
        with open(png, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print(f"screenshot: {png}")

        no_errors("at the end")

        # 5. The page of a log(0): the infinite value and adjoints are marked, in the listing and the graph.
        open_page(browser, os.path.abspath(os.path.join(args.out, "nan.html")))
        no_errors("while loading nan.html")
        marks = browser.evaluate("""Object.fromEntries([...document.querySelectorAll('#listing tbody tr')].map(tr =>
            [tr.children[1].textContent, [tr.classList.contains('nonfinite'), tr.querySelector('td.flag').textContent,
             document.querySelector(`g.node[data-entry='${tr.dataset.entry}']`)?.classList.contains('nonfinite')]]))""")
        for name, flag in (("probs", "adjoint"), ("logp", "value"), ("nll", "value")):
            check(marks[name][0] and marks[name][1] == f"⚠ {flag} not finite",
                  f"nan.html: {name} should be marked '{flag} not finite': {marks[name]}")
            if has_graph:
                check(marks[name][2], f"nan.html: the node of {name} is not marked")
        print("nan.html: the infinite value and adjoints are marked")
    finally:
        browser.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writer", required=True, help="the program that writes the pages")
    parser.add_argument("--out", required=True, help="directory for the pages, logs and screenshots")
    parser.add_argument("--page", default="seed.html", help="seed.html or seed-listing.html")
    parser.add_argument("--window", default="1400x900", help="the browser window's size, WIDTHxHEIGHT")
    args = parser.parse_args()
    try:
        return run(args)
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        log = os.path.join(args.out, "chromium.log")
        print(f"(the browser's own log: {log})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
