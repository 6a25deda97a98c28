"""The HTML report (`simplejob report TARGET --html`, `run --html FILE`), opened in a real headless
browser (Debian's chromium; .ci/run installs it): it renders with no errors, the timeline has one
bar per attempt with hover text, a log holding <script> does not run, and a large batch is written
in seconds. Without chromium these tests are skipped, saying so; the rest still run."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import read_state, wait_until
from simplejob.cli import htmlreport, status
from simplejob.model import JobDefinition, JobRecord, JobRunningStatus
from simplejob.statefile import State
from test_cli_run import simplejob, start, write_jobs
from test_state_file import DATA

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)"
)
PAYLOAD = (
    "<script>document.title='pwned';document.documentElement.setAttribute('data-pwned','1')</script>\n"
    "<img src=x onerror=\"document.title='pwned'\">\n"
    "</script><script>document.title='pwned'</script> \u2028 & done"
)


def browser(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless chromium once (its own profile, its own process group, reaped after)."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        url,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of chromium is left (zygotes, helpers)
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def dom_of(tmp_path, page, hash_: str = "#selftest") -> str:
    done = browser(tmp_path, f"file://{page}{hash_}", "--dump-dom", "--virtual-time-budget=5000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert console_errors(done.stderr) == []
    dom = done.stdout
    assert re.search(r'<pre id="errors" hidden="">\s*</pre>', dom), re.search(r'<pre id="errors".*?</pre>', dom, re.S)
    return dom


def selftest(dom: str) -> dict:
    match = re.search(r'<pre id="selftest">(.*?)</pre>', dom, re.S)
    assert match and match[1], "the page's self-test did not run"
    return json.loads(html.unescape(match[1]))


@pytest.fixture(scope="module")
def failed_batch(tmp_path_factory):
    """A finished batch with every kind of bar: ok, a retry after a timeout, a failure whose log is
    full of HTML, a job blocked by it, an id that looks like HTML."""
    tmp_path = tmp_path_factory.mktemp("report")
    marker = tmp_path / "tried"
    payload = tmp_path / "payload.txt"
    payload.write_text(PAYLOAD)
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "fetch", "commandLine": "sleep 0.2"},
            {
                "id": "flaky",
                "commandLine": f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; sleep 30",
                "shell": True,
                "timeout": 0.5,
                "retry": 1,
            },
            {"id": "fails", "commandLine": f"cat {payload}; exit 4", "shell": True, "waiting": ["fetch"]},
            {"id": "blocked", "commandLine": "true", "waiting": ["fails"]},
            {"id": '<i>x<i> & "q"', "commandLine": "echo '<b>bold</b>'", "shell": True},
        ],
    )
    report = tmp_path / "report.html"
    done = simplejob("run", jobs, "-k", "-j", "2", "--html", str(report), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "HTML report: report.html" in done.stderr
    state = read_state(tmp_path / ".simplejob" / "jobs" / "state.json")
    return tmp_path, jobs, report, state


def test_the_page_is_self_contained_and_escapes_what_comes_from_the_state_and_logs(failed_batch):
    tmp_path, jobs, report, state = failed_batch
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page), "no network: nothing is fetched"
    assert "@import" not in page and "url(" not in page
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)[1]
    assert "<" not in data and "\u2028" not in data  # nothing in it can end the element
    assert "pwned" in data and json.loads(data)["tails"]
    assert "<i>x<i>" not in page.replace(data, "")  # the id as HTML appears nowhere outside the data
    assert "&lt;i&gt;x&lt;i&gt; &amp; &quot;q&quot;" in page  # in the graph's SVG, escaped
    # the same page from `simplejob report`
    again = simplejob("report", jobs, "--html", "-o", str(tmp_path / "again.html"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.html").read_text().count('class="node ') == 5


@needs_chromium
def test_it_renders_with_a_bar_per_attempt_hover_text_and_no_script_from_a_log(failed_batch, tmp_path):
    _, _, report, state = failed_batch
    dom = dom_of(tmp_path, report)
    attempts = [(job_id, e) for job_id, job in state["jobs"].items() for e in job["history"]]
    assert len(attempts) == 5  # fetch, flaky twice, fails, the html-looking id; blocked never ran
    result = selftest(dom)
    assert result["bars"] == len(attempts) == dom.count('class="bar ', dom.index('id="slots"'), dom.index("jobs-rows"))
    for tip in result["tips"]:
        assert re.search(r"\nattempt \d of \d, worker slot [01]\nstart: .*\nelapsed: ", tip), tip
    assert sorted(tip.split("\n")[0] for tip in result["tips"]) == sorted(job_id for job_id, _ in attempts)
    flaky = [tip for tip in result["tips"] if tip.startswith("flaky\n")]
    assert any("outcome: timed out" in t and "reason:  timed out after 0.5 s" in t for t in flaky)
    assert any("attempt 2 of 2" in t and "exit code 0" in t for t in flaky)
    assert result["jobRowBars"] == len(attempts)  # the other view: one row per job
    assert result["sortedByElapsed"][0] == "flaky"  # longest first
    # the log's <script> and onerror did not run: it is text on the page
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom)[1] and 'data-pwned="1"' not in dom
    assert "&lt;script&gt;document.title='pwned'" in dom
    assert '&lt;i&gt;x&lt;i&gt; &amp; "q"' in dom  # the id, as text in the table


@needs_chromium
def test_a_screenshot_of_the_report(failed_batch, tmp_path):
    _, _, report, _ = failed_batch
    shot = tmp_path / "shot.png"
    done = browser(tmp_path, f"file://{report}", f"--screenshot={shot}", "--window-size=1200,900")
    assert done.returncode == 0 and console_errors(done.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@needs_chromium
def test_an_old_state_file_without_history_draws_one_bar_per_job(tmp_path):
    old = DATA / "v1-finished" / "state.json"
    done = simplejob("report", str(old), "--html", "-o", str(tmp_path / "old.html"))
    assert done.returncode == 0, done.stderr
    ran = [job for job in read_state(old)["jobs"].values() if job["startTimestamp"] and not job["resumed"]]
    result = selftest(dom_of(tmp_path, tmp_path / "old.html"))
    assert result["bars"] == len(ran) and all(", lane " in tip for tip in result["tips"])


@needs_chromium
def test_run_html_is_written_when_the_batch_is_interrupted(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.json", [{"id": "quick", "commandLine": "true"}, {"id": "long", "commandLine": "sleep 30"}]
    )
    report = tmp_path / "out.html"
    proc = start("run", jobs, "--html", str(report), cwd=tmp_path)
    state = tmp_path / ".simplejob" / "jobs" / "state.json"
    wait_until(lambda: state.exists() and read_state(state)["jobs"]["long"]["pid"], message="long to start")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "HTML report: out.html" in err
    result = selftest(dom_of(tmp_path, report))
    assert result["bars"] == 2 and any("outcome: interrupted" in tip for tip in result["tips"])


def synthetic_view(count: int, workers: int = 8) -> status.View:
    """A finished batch of count jobs in layers of 50 (each waiting on two of the layer before),
    one attempt each, spread over the workers' slots, every 97th failed."""
    records = {}
    t = 1_800_000_000.0
    for i in range(count):
        waits = [] if i < 50 else list(dict.fromkeys([f"job-{i - 50}", f"job-{i - 50 - (i % 50 > 0)}"]))
        record = JobRecord(JobDefinition(f"job-{i}", f"sh -c 'work {i}'", waits))
        start = t + (i // workers) * 0.05
        failed = i % 97 == 96
        record.runningStatus, record.exitCode, record.attempts = JobRunningStatus.Completed, int(failed), 1
        record.startTimestamp, record.elapsedSeconds, record.slot = start, 0.04, i % workers
        record.history = [
            {
                "attempt": 1,
                "startTimestamp": start,
                "finishTimestamp": start + 0.04,
                "slot": i % workers,
                "pid": 1000 + i,
                "exitCode": int(failed),
                "result": "exited",
                "reason": "exit code 1" if failed else None,
            }
        ]
        records[record.id] = record
    state = State("/nowhere/state.json", 1, {"running": False, "result": "finished"}, {"maxWorkers": workers}, records)
    from simplejob.cli.describe import blocked_by

    return status.View(state.path, records, state.supervisor, None, "finished", blocked_by(records), state.options)


def test_ten_thousand_jobs_are_written_in_seconds(tmp_path):
    view = synthetic_view(10_000)
    started = time.perf_counter()
    htmlreport.write(view, str(tmp_path / "big.html"))
    took = time.perf_counter() - started
    assert took < 5, f"{took:.1f} s"
    page = (tmp_path / "big.html").read_text()
    assert "too many to draw one by one" in page and len(page) < 5_000_000


@needs_chromium
def test_ten_thousand_jobs_stay_usable_in_the_browser(tmp_path):
    htmlreport.write(synthetic_view(10_000), str(tmp_path / "big.html"))
    started = time.perf_counter()
    dom = dom_of(tmp_path, tmp_path / "big.html", hash_="")
    took = time.perf_counter() - started
    assert took < 30, f"{took:.1f} s"
    assert dom.count('class="bar ') == 10_000  # the slot view: every attempt
    body = dom[dom.index("<tbody>") : dom.index("</tbody>")]
    assert body.count("<tr>") == 500  # the table, 500 rows at a time
