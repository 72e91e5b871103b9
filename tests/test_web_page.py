"""The web page of ``wildvox serve`` in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed by ``make browser``), driven with Selenium against a real
uvicorn server on a free localhost port: enroll two wildmix speakers from uploaded files,
verify two recordings, identify from a file and from the (fake) microphone, diarize a
meeting of the two, remove a speaker. A screenshot of the page is kept under the test's tmp
folder (web_page.png)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("selenium", reason="selenium is not installed")
import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

import wildvox
from wildvox.audio.io import load_audio
from wildvox.service.app import ServiceConfig, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
A = ["ls2414/128291/00001.opus", "ls2414/128291/00002.opus", "ls2414/128291/00004.opus"]
B = ["ls2609/156975/00001.opus", "ls2609/156975/00002.opus", "ls2609/156975/00004.opus"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server (in a thread of this process) with a fresh store, no keys."""
    store = tmp_path_factory.mktemp("web") / "speakers.sqlite"
    app = create_app(ServiceConfig(store=store, auth=False), model=wildvox.load_model())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser(wildmix: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "chromium / chromedriver not installed: run `make browser` (apt-get install "
            "chromium chromium-driver)"
        )
    # The fake microphone plays a recording of speaker A (Chromium wants 16-bit PCM WAV).
    mic = tmp_path_factory.mktemp("mic") / "speaker_a.wav"
    sf.write(mic, load_audio(wildmix / "wav" / A[1], sample_rate=16000), 16000, "PCM_16")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait_text(driver: WebDriver, element_id: str, timeout: float = 30) -> str:
    """The text of ``element_id`` once it holds an answer (not a "…ing" progress line)."""

    def answered(d: WebDriver) -> str | bool:
        text = str(d.find_element(By.ID, element_id).text)
        return text if text and not text.endswith("…") else False

    return str(WebDriverWait(driver, timeout).until(answered))


def _files(wildmix: Path, *rel: str) -> str:
    return "\n".join(str(wildmix / "wav" / r) for r in rel)


def test_web_page_enroll_verify_identify(
    server: str, browser: WebDriver, wildmix: Path, tmp_path: Path
) -> None:
    browser.get(server)
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true"
    )
    assert "nobody enrolled yet" in _wait_text(browser, "speakers-result")
    for name, files in (("Alice", A[:2]), ("Bob", B[:2])):
        field = browser.find_element(By.ID, "enroll-name")
        field.clear()
        field.send_keys(name)
        browser.find_element(By.ID, "enroll-files").send_keys(_files(wildmix, *files))
        browser.find_element(By.ID, "enroll-submit").click()
        assert f"Enrolled {name}: 2 recording(s)" in _wait_text(browser, "enroll-result")
    speakers = _wait_text(browser, "speakers-result")
    assert "Alice" in speakers and "Bob" in speakers

    browser.find_element(By.ID, "verify-a").send_keys(_files(wildmix, A[0]))
    browser.find_element(By.ID, "verify-b").send_keys(_files(wildmix, A[2]))
    browser.find_element(By.ID, "verify-submit").click()
    same = _wait_text(browser, "verify-result")
    assert "Same speaker at eer (LLR threshold" in same, same
    browser.find_element(By.ID, "verify-b").send_keys(_files(wildmix, B[2]))
    browser.find_element(By.ID, "verify-submit").click()
    WebDriverWait(browser, 30).until(
        lambda d: "Different speakers" in _wait_text(d, "verify-result")
    )

    browser.find_element(By.ID, "identify-file").send_keys(_files(wildmix, B[2]))
    browser.find_element(By.ID, "identify-submit").click()
    ident = _wait_text(browser, "identify-result")
    assert "It is Bob at eer" in ident and "Alice" in ident, ident  # Alice ranks second

    # The microphone: MediaRecorder -> WebAudio -> 16 kHz WAV upload (the fake device plays A).
    slot = browser.find_element(By.CSS_SELECTOR, '[data-slot="identify"]')
    record = slot.find_element(By.TAG_NAME, "button")
    record.click()
    WebDriverWait(browser, 10).until(lambda d: record.text == "■ Stop")
    time.sleep(4)
    record.click()
    state = slot.find_element(By.CLASS_NAME, "rec-state")
    WebDriverWait(browser, 20).until(lambda d: state.text.startswith("recorded"))
    assert "16 kHz WAV" in state.text
    browser.find_element(By.ID, "identify-submit").click()
    WebDriverWait(browser, 30).until(lambda d: "Bob at" not in _wait_text(d, "identify-result"))
    recorded = _wait_text(browser, "identify-result")
    assert "It is Alice" in recorded, recorded

    # Who spoke when: a meeting A, B, A from wildmix files, named after the enrolled two.
    meeting = tmp_path / "meeting.wav"
    parts = [load_audio(wildmix / "wav" / f) for f in (A[1], B[1], A[2])]
    sf.write(meeting, np.concatenate(parts), 16000, "PCM_16")
    browser.find_element(By.ID, "diarize-file").send_keys(str(meeting))
    browser.find_element(By.ID, "diarize-submit").click()
    diarized = _wait_text(browser, "diarize-result", timeout=60)
    assert diarized.startswith("2 speaker(s)") and "named at eer" in diarized, diarized
    lanes = browser.find_elements(By.CSS_SELECTOR, "#diarize-result .lane-name")
    assert [x.text for x in lanes] == ["Alice", "Bob"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#diarize-result .turn")) >= 3

    shot = tmp_path / "web_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # Remove Bob from the list; a bad upload shows the server's JSON error.
    rows = browser.find_elements(By.CSS_SELECTOR, "#speakers-result tbody tr")
    bob = next(r for r in rows if r.text.startswith("Bob"))
    bob.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(browser, 20).until(lambda d: "Bob" not in _wait_text(d, "speakers-result"))
    notes = tmp_path / "notes.wav"
    notes.write_bytes(b"this is not audio")
    browser.find_element(By.ID, "identify-file").send_keys(str(notes))
    browser.find_element(By.ID, "identify-submit").click()
    WebDriverWait(browser, 30).until(lambda d: "422" in _wait_text(d, "identify-result"))
    assert "bad_audio (file: notes.wav)" in _wait_text(browser, "identify-result")
