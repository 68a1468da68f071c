"""The kubescribe command as a user runs it: API keys made with a kubeconfig, then a transcription through the
real gateway, followed, listed, downloaded and cancelled."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import Cluster, Gateway, wait_for
from tests.integration.speech import (
    INTERVIEW,
    NAME,
    SENTENCE_WITH_A_NAME,
    VOICES,
    conversation,
    speak,
    word_error_rate,
)

SENTENCE = "Every team shares the same cluster, and each one sees only its own recordings."
MAX_WER = 0.3
SRT_CUE = re.compile(r"^\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}$", re.MULTILINE)


def kubescribe(gateway: Gateway, *args: str, key: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(gateway.kubescribe.cluster.local.admin_kubeconfig),
        "KUBESCRIBE_GATEWAY_URL": gateway.url,
        "KUBESCRIBE_API_KEY": key,
    }
    return subprocess.run(
        [sys.executable, "-m", "kubescribe.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_key_made_by_the_command_transcribes_through_the_gateway(
    gateway: Gateway, cluster: Cluster, speech_dir: Path, tmp_path: Path
) -> None:
    cluster.kubectl("create", "namespace", "gw-cli")
    secret = ["--secret-namespace", gateway.kubescribe.namespace]
    made = kubescribe(gateway, "keys", "create", "--namespace", "gw-cli", "--name", "carol", *secret)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    cluster.leaks.secret(key, "API key gw-cli/carol")
    assert key.startswith("ks_") and "shown only this once" in made.stderr
    listed = kubescribe(gateway, "keys", "list", "--json", *secret)
    assert {"namespace": "gw-cli", "name": "carol"}.items() <= next(
        record for record in json.loads(listed.stdout) if record["name"] == "carol"
    ).items()
    assert key not in listed.stdout

    # The gateway reads the keys Secret again at most every few seconds.
    wait_for(lambda: kubescribe(gateway, "jobs", key=key).returncode == 0, 30, "the gateway to read the new key")
    wav = speak(speech_dir, "cli-sentence", SENTENCE)
    srt = tmp_path / "sentence.srt"
    done = kubescribe(gateway, "transcribe", str(wav), "--model", "tiny.en", "-o", str(srt), key=key)
    assert done.returncode == 0, done.stderr
    assert "Succeeded" in done.stderr
    assert SRT_CUE.search(srt.read_text()), srt.read_text()
    spoken = [line for line in srt.read_text().splitlines() if line.strip() and not line.isdigit()]
    assert word_error_rate(SENTENCE, " ".join(line for line in spoken if not SRT_CUE.match(line))) < MAX_WER

    # Decoding options: hot words spell a made-up name, word times are written; a bad value is the gateway's 400.
    named = tmp_path / "name.json"
    hot = ["--hotwords", NAME, "--word-timestamps"]
    done = kubescribe(
        gateway, "transcribe", str(speak(speech_dir, "name", SENTENCE_WITH_A_NAME)), *hot, "-o", str(named), key=key
    )
    assert done.returncode == 0, done.stderr
    segments = json.loads(named.read_text())["segments"]
    assert NAME in " ".join(segment["text"] for segment in segments), segments
    assert all(segment["words"] for segment in segments)
    refused = kubescribe(gateway, "transcribe", str(wav), "--beam-size", "0", key=key)
    assert refused.returncode == 1 and "beam_size" in refused.stderr, refused.stderr

    # Who spoke when: --speakers labels the interview's two voices turn by turn (the first heard is SPEAKER_00).
    interview, turns = conversation(speech_dir, "cli-interview", INTERVIEW)
    labelled = tmp_path / "interview.txt"
    done = kubescribe(gateway, "transcribe", str(interview), "--speakers", "2", "-o", str(labelled), key=key)
    assert done.returncode == 0, done.stderr
    speakers = [turn.split("\n", 1)[0] for turn in labelled.read_text().strip().split("\n\n")]
    assert speakers == [f"SPEAKER_{VOICES.index(voice):02d}" for _, _, voice in turns], labelled.read_text()

    jobs = json.loads(kubescribe(gateway, "jobs", "--json", "--phase", "Succeeded", key=key).stdout)
    [job] = [job for job in jobs if job["filename"] == "cli-sentence.wav"]
    assert (job["namespace"], job["finished"]) == ("gw-cli", True)
    again = kubescribe(gateway, "transcript", job["id"], "--format", "srt", key=key)
    assert again.returncode == 0 and again.stdout == srt.read_text(), again.stderr
    missing = kubescribe(gateway, "transcript", job["id"], "--format", "vtt", key=key)
    assert missing.returncode == 1 and "has no vtt transcript" in missing.stderr

    # Another namespace's key does not find the job; the owner cancels it and it is gone.
    theirs = kubescribe(gateway, "get", job["id"], key=gateway.keys["gw-a"])
    assert theirs.returncode == 1 and f"no job {job['id']}" in theirs.stderr
    assert kubescribe(gateway, "cancel", job["id"], key=key).returncode == 0
    gone = kubescribe(gateway, "get", job["id"], key=key)
    assert gone.returncode == 1 and "404" in gone.stderr

    # A revoked key stops working once the gateway reads the keys again.
    assert kubescribe(gateway, "keys", "revoke", "--namespace", "gw-cli", "--name", "carol", *secret).returncode == 0

    def refused() -> subprocess.CompletedProcess[str] | None:
        answer = kubescribe(gateway, "jobs", key=key, timeout=30)
        return answer if answer.returncode != 0 else None

    answer = wait_for(refused, 60, "the revoked key to be refused")
    assert answer.returncode == 1 and "invalid API key" in answer.stderr, answer.stderr
    assert len(answer.stderr.strip().splitlines()) == 1


def test_several_files_are_transcribed_as_one_batch(
    gateway: Gateway, cluster: Cluster, namespace: str, speech_dir: Path, tmp_path: Path
) -> None:
    key = gateway.create_key(namespace, "dave")
    wait_for(lambda: kubescribe(gateway, "jobs", key=key).returncode == 0, 30, "the gateway to read the new key")
    sentences = {"first": SENTENCE, "second": "Small models are fast and large models are accurate."}
    audio = [speak(speech_dir, f"cli-{name}", text) for name, text in sentences.items()]
    out = tmp_path / "out"
    done = kubescribe(gateway, "transcribe", *map(str, audio), "--model", "tiny.en", "-o", f"{out}/", key=key)
    assert done.returncode == 0, done.stderr
    assert re.search(r"batch tb-[a-z0-9]{12} submitted: 2 of 2 files", done.stderr)
    assert "cli-first.wav" in done.stderr and "total" in done.stderr
    assert sorted(path.name for path in out.iterdir()) == ["cli-first.txt", "cli-second.txt"]
    for name, text in sentences.items():
        assert word_error_rate(text, (out / f"cli-{name}.txt").read_text()) < MAX_WER

    batch_id = re.search(r"tb-[a-z0-9]{12}", done.stderr)[0]  # type: ignore[index]
    listed = cluster.get("tj", "-n", namespace, "-l", f"kubescribe.io/batch={batch_id}")["items"]
    assert len(listed) == 2
    cancelled = kubescribe(gateway, "cancel", batch_id, key=key)
    assert cancelled.returncode == 0 and "0 jobs are being cancelled" in cancelled.stderr, cancelled.stderr
