"""Batches of fifty files, as a user with many recordings sends them: through the gateway's API and through the
kubescribe command, each file transcribed once, each transcript where the user looks for it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Gateway, wait_for
from tests.integration.speech import speak, word_error_rate
from tests.integration.test_batches import SENTENCES, post_files
from tests.integration.test_cli import kubescribe

FILES = 50
MAX_WER = 0.3


@pytest.fixture(scope="module")
def roomy(gateway: Gateway) -> Iterator[Gateway]:
    """The gateway with room for a batch of FILES: as many files per batch and waiting jobs per namespace, and a
    rate limit a batch of that size fits in (each job counts as a request)."""
    room = str(FILES)
    gateway.install(
        **{
            "gateway.maxBatchFiles": room,
            "gateway.maxQueuedJobsPerNamespace": room,
            "gateway.rateLimit.burst": str(2 * FILES),
        }
    )
    yield gateway
    gateway.install()


def recordings(directory: Path, prefix: str) -> dict[Path, str]:
    """FILES short recordings, each of one of the sentences, by path."""
    texts = [SENTENCES[index % len(SENTENCES)] for index in range(FILES)]
    return {speak(directory, f"{prefix}-{index:02d}", text): text for index, text in enumerate(texts)}


def caller(gateway: Gateway, namespace: str) -> httpx.Client:
    key = gateway.create_key(namespace, "many")
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
    wait_for(lambda: client.get("/v1/models").status_code == 200, 30, "the new key to be read")
    return client


def test_fifty_uploads_in_one_batch_give_fifty_transcripts(roomy: Gateway, namespace: str, speech_dir: Path) -> None:
    files = recordings(speech_dir, "api")
    client = caller(roomy, namespace)
    response = post_files(client, list(files), model="tiny.en", formats="txt", language="en")
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    assert len(response.json()["jobs"]) == FILES

    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = client.get(f"/v1/batches/{batch_id}").json()
        return view if view["finished"] else None

    view = wait_for(finished, 900, "the batch of fifty to finish", interval=3)
    assert (view["total"], view["counts"]["Succeeded"]) == (FILES, FILES), view["counts"]
    for file in view["files"]:
        text = files[speech_dir / file["filename"]]
        transcript = client.get(file["transcripts"]["txt"]).text
        assert word_error_rate(text, transcript) < MAX_WER, (file["filename"], text, transcript)


def test_fifty_files_through_the_command_land_next_to_their_names(
    roomy: Gateway, namespace: str, speech_dir: Path, tmp_path: Path
) -> None:
    files = recordings(speech_dir, "cli")
    key = roomy.create_key(namespace, "many-cli")
    wait_for(lambda: kubescribe(roomy, "jobs", key=key).returncode == 0, 30, "the gateway to read the new key")
    out = tmp_path / "out"
    paths = [str(path) for path in files]
    done = kubescribe(roomy, "transcribe", *paths, "--model", "tiny.en", "-o", f"{out}/", key=key, timeout=900)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"batch tb-[a-z0-9]{{12}} submitted: {FILES} of {FILES} files", done.stderr)
    assert sorted(path.name for path in out.iterdir()) == sorted(path.with_suffix(".txt").name for path in files)
    for path, text in files.items():
        transcript = (out / path.with_suffix(".txt").name).read_text()
        assert word_error_rate(text, transcript) < MAX_WER, (path.name, text, transcript)
