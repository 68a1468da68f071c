"""The web page in real headless Chromium (Debian's), against the gateway on the local cluster: a key, an upload
with live progress, the transcript, a download, and a recording from a fake microphone."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from kubescribe.api.v1alpha1 import PHASES
from tests.integration.conftest import Gateway, wait_for
from tests.integration.speech import PASSAGE, speak, word_error_rate

CHROMIUM = Path("/usr/bin/chromium")
MAX_WER = 0.3  # tiny.en on espeak-ng's voice, as in test_transcription
MICROPHONE = "Testing the microphone. The microphone works."
SRT_CUE = re.compile(r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d")
SEGMENT_TIME = re.compile(r"^\d+:\d\d\.\d \u2013 \d+:\d\d\.\d$")
JOB_TIMEOUT_MS = 240_000

# Records every state a job row shows, so that a test sees progress as it happened rather than only the end.
RECORD_ROWS = """() => {
  window.rowsSeen = [];
  const note = () => document.querySelectorAll("#jobs tbody tr").forEach((row) => {
    const bar = row.querySelector("progress");
    window.rowsSeen.push({ id: row.dataset.id, phase: row.dataset.phase,
      value: bar && bar.hasAttribute("value") ? bar.value : null });
  });
  new MutationObserver(note).observe(document.querySelector("#jobs tbody"),
    { subtree: true, childList: true, attributes: true, characterData: true });
}"""


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, which `make test` installs."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium (make system-packages does)"
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: Path, speech_dir: Path) -> Iterator[Browser]:
    microphone = speak(speech_dir, "microphone", MICROPHONE)
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    context = browser.new_context(base_url=gateway.url, accept_downloads=True, viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.goto("/")
    yield page
    context.close()
    assert not errors, f"the page threw or broke its Content-Security-Policy: {errors}"


@pytest.fixture
def key(gateway: Gateway, namespace: str) -> str:
    """An API key of a namespace of this test's own, once the gateway has read it."""
    key = gateway.create_key(namespace, "browser")
    wait_for(lambda: status(gateway, key, "/v1/jobs") == 200, 30, "the gateway to accept the new key")
    return key


def api(gateway: Gateway, key: str, path: str) -> Any:
    request = urllib.request.Request(gateway.url.rstrip("/") + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def status(gateway: Gateway, key: str, path: str) -> int:
    try:
        api(gateway, key, path)
    except urllib.error.HTTPError as error:
        return error.code
    return 200


def enter_key(page: Page, key: str) -> None:
    page.get_by_role("textbox", name="API key").fill(key)
    page.get_by_role("button", name="Save key").click()


def row(page: Page, filename: str) -> Any:
    return page.locator("#jobs tbody tr").filter(has=page.get_by_role("rowheader", name=filename))


def test_upload_shows_live_progress_the_transcript_and_downloads(
    page: Page, key: str, speech_dir: Path, tmp_path: Path
) -> None:
    enter_key(page, "ks_not-a-key")
    expect(page.get_by_role("alert")).to_contain_text("invalid API key")

    enter_key(page, key)
    expect(page.get_by_text("API key saved in this browser.")).to_be_visible()
    expect(page.get_by_role("alert")).to_be_empty()
    page.evaluate(RECORD_ROWS)

    wav = speak(speech_dir, "passage", PASSAGE)
    page.get_by_label("Audio or video file").set_input_files(wav)
    page.get_by_label("Model").fill("tiny.en")
    # Without VAD the runner decodes window by window, so progress is reported as it goes.
    page.get_by_label("Skip silence").uncheck()
    page.get_by_role("button", name="Upload and transcribe").click()
    expect(page.get_by_role("status").filter(has_text="passage.wav was submitted")).to_be_visible()

    job = row(page, "passage.wav")
    expect(job).to_have_attribute("data-phase", "Succeeded", timeout=JOB_TIMEOUT_MS)
    seen = page.evaluate("window.rowsSeen")
    running = [state["value"] for state in seen if state["phase"] == "Running" and state["value"] is not None]
    assert any(0 < value < 100 for value in running), seen
    expect(job.get_by_role("progressbar", name="Progress of passage.wav")).to_have_attribute("value", "100")

    page.get_by_role("button", name="Transcript of passage.wav").click()
    transcript = page.get_by_role("region", name="Transcript of passage.wav")
    expect(transcript).to_be_visible()
    expect(transcript.get_by_role("heading")).to_be_focused()
    expect(transcript).to_contain_text("Language: en")
    segments = transcript.locator("#segments li")
    expect(segments.first).to_be_visible()
    times = segments.locator(".time").all_inner_texts()
    assert all(SEGMENT_TIME.match(time) for time in times), times
    text = " ".join(segments.locator(".text").all_inner_texts())
    assert word_error_rate(PASSAGE, text) < MAX_WER, text

    with page.expect_download() as download_info:
        transcript.get_by_role("button", name="Download SRT").click()
    download = download_info.value
    assert download.suggested_filename == "passage.srt"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    srt = saved.read_text()
    assert SRT_CUE.search(srt), srt
    spoken = [line for line in srt.splitlines() if line.strip() and not line.isdigit() and not SRT_CUE.match(line)]
    assert word_error_rate(PASSAGE, " ".join(spoken)) < MAX_WER, srt

    # The key stays in this browser: a reload lists the job again without asking for it.
    page.reload()
    expect(page.get_by_role("textbox", name="API key")).to_have_value(key)
    expect(row(page, "passage.wav")).to_have_attribute("data-phase", "Succeeded")

    # The filter offers the API's phases; a finished job is listed under its own and under no other.
    show = page.get_by_label("Show")
    expect(show.locator("option")).to_have_text(["All jobs", *PHASES])
    show.select_option("Running")
    expect(row(page, "passage.wav")).to_have_count(0)
    show.select_option("Succeeded")
    expect(row(page, "passage.wav")).to_have_attribute("data-phase", "Succeeded")


def test_recording_from_the_microphone_makes_a_job(page: Page, gateway: Gateway, key: str) -> None:
    enter_key(page, key)
    expect(page.get_by_text("API key saved in this browser.")).to_be_visible()
    page.get_by_label("Model").fill("tiny.en")

    record = page.get_by_role("button", name="Record from microphone")
    record.click()
    stop = page.get_by_role("button", name="Stop recording and transcribe")
    expect(stop).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(6000)
    stop.click()
    expect(page.get_by_role("status").filter(has_text="was submitted")).to_be_visible(timeout=30_000)

    recording = page.locator("#jobs tbody tr").filter(has_text=re.compile(r"recording-[\d-]+\.(webm|ogg)")).first
    expect(recording).to_have_attribute("data-phase", "Succeeded", timeout=JOB_TIMEOUT_MS)
    job_id = recording.get_attribute("data-id")
    assert job_id
    view = api(gateway, key, f"/v1/jobs/{job_id}")
    assert re.fullmatch(r"recording-[\d-]+\.(webm|ogg)", view["filename"]), view
    filename = view["filename"]

    page.get_by_role("button", name=f"Transcript of {filename}").click()
    heard = page.get_by_role("region", name=f"Transcript of {filename}").locator("#segments").inner_text()
    # The fake microphone loops the spoken file from wherever it is: some of its words are heard, not all.
    assert set(re.findall(r"[a-z]+", heard.lower())) & {"testing", "microphone", "works"}, heard

    page.get_by_role("button", name=f"Delete {filename}").click()
    expect(recording).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text=f"Deleted {filename}")).to_be_visible()
    wait_for(lambda: status(gateway, key, f"/v1/jobs/{job_id}") == 404, 60, f"{job_id} to be deleted")
