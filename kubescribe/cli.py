"""`kubescribe`: transcribe audio through the gateway, follow and manage jobs, and manage API keys.

The gateway's URL and API key come from `--gateway` and `--api-key`, or from `KUBESCRIBE_GATEWAY_URL` and
`KUBESCRIBE_API_KEY`. Only the standard library talks to the gateway; `keys` uses the kubernetes client with
the user's kubeconfig.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

FORMATS = ("json", "txt", "srt", "vtt", "tsv")
PHASES = ("Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled")
FINISHED = frozenset({"Succeeded", "Failed", "Cancelled"})
ENV_GATEWAY = "KUBESCRIBE_GATEWAY_URL"
ENV_API_KEY = "KUBESCRIBE_API_KEY"
CHUNK = 256 * 1024
PAGE_LIMIT = 100
"""The most jobs the gateway lists in one page."""


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


# Server-sent events


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """The events of a text/event-stream, given line by line (with or without line endings)."""
    event, data = "", list[str]()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


# Rendering


def render_bar(fraction: float, width: int) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _seconds(value: float) -> str:
    value = round(value)
    if value < 60:
        return f"{value} s"
    minutes, seconds = divmod(value, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def render_progress(job: dict[str, Any], width: int = 30) -> str:
    """One line about a job: its phase and, while it runs, a bar with the share done and the time left."""
    phase = job.get("phase") or "Pending"
    progress = job.get("progress") or {}
    percent = progress.get("percent")
    if phase == "Succeeded":
        percent = 100.0
    if percent is None:
        return f"{phase:<9} {render_bar(0, width)}" if phase == "Running" else phase
    line = f"{phase:<9} {render_bar(percent / 100, width)} {int(percent):3d}%"
    processed, duration = progress.get("processedSeconds"), progress.get("durationSeconds")
    if phase == "Running" and processed is not None and duration:
        line += f"  {_seconds(processed)} of {_seconds(duration)}"
    eta = progress.get("etaSeconds")
    if phase == "Running" and eta is not None:
        line += f", about {_seconds(eta)} left"
    return line


class ProgressLine:
    """Redraws one status line on a terminal; elsewhere (a log, a pipe) writes a line when the phase changes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = ""

    def show(self, text: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r" + text[:width].ljust(min(width, max(len(self.shown), len(text)))))
            self.stream.flush()
        elif text.split(" ", 1)[0] != self.shown.split(" ", 1)[0]:
            self.stream.write(text + "\n")
            self.stream.flush()
        self.shown = text

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
        self.shown = ""


def describe_job(job: dict[str, Any]) -> str:
    """A readable summary of a job view."""
    rows = [
        ("id", job.get("id")),
        ("namespace", job.get("namespace")),
        ("phase", job.get("phase")),
        ("created", job.get("created")),
        ("file", job.get("filename")),
        ("model", job.get("model")),
        ("task", job.get("task")),
        ("language", job.get("language") or "detect"),
        ("formats", ", ".join(job.get("formats") or [])),
    ]
    if job.get("phase") not in FINISHED and job.get("progress"):
        rows.append(("progress", render_progress(job, 20).split(" ", 1)[1].strip()))
    if result := job.get("result"):
        probability = result.get("languageProbability")
        language = result.get("language") or "?"
        rows.append(("detected", f"{language} ({probability:.0%})" if probability is not None else language))
        if result.get("durationSeconds") is not None:
            rows.append(("duration", _seconds(result["durationSeconds"])))
        if result.get("realTimeFactor") is not None:
            rows.append(("speed", f"{result['realTimeFactor']:.2f} of real time"))
        rows.extend((f"output {name}", uri) for name, uri in sorted((result.get("outputs") or {}).items()))
    if error := job.get("error"):
        rows.append(("error", f"{error.get('reason')}: {error.get('message')}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows if value not in (None, ""))


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]) for row in rows)


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    rows: list[tuple[str, ...]] = [("ID", "PHASE", "PROGRESS", "MODEL", "CREATED", "FILE")]
    for job in jobs:
        percent = (job.get("progress") or {}).get("percent")
        shown = "100%" if job.get("phase") == "Succeeded" else "" if percent is None else f"{percent:.0f}%"
        fields = (job.get("id"), job.get("phase"), shown, job.get("model"), job.get("created"), job.get("filename"))
        rows.append(tuple(str(field or "") for field in fields))
    return table(rows)


# The gateway


def _error_message(status: int, body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{status} {error.get('type', 'error')}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = body.decode(errors="replace").strip()
        return f"{status}: {text[:300]}" if text else f"HTTP {status}"


class Gateway:
    """The REST gateway, with the API key sent on every request."""

    def __init__(self, url: str, api_key: str, timeout: float = 60) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def open(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        *,
        data: Iterable[bytes] | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The response, open for reading; an HTTP error becomes a CliError with the gateway's message."""
        query = {k: v for k, v in (query or {}).items() if v}
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Authorization": f"Bearer {self.api_key}", "User-Agent": "kubescribe-cli", **(headers or {})}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (http(s) only)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)  # noqa: S310
        except urllib.error.HTTPError as error:
            raise CliError(_error_message(error.code, error.read())) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach the gateway at {self.url}: {reason}") from None

    def json(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        with self.open(method, path, query) as response:
            body = response.read()
        return json.loads(body) if body else None

    def submit(self, audio: Path, fields: dict[str, str], on_sent: Callable[[float], None]) -> dict[str, Any]:
        """Uploads `audio` as multipart form data, streamed from disk; `on_sent` gets the share sent so far."""
        boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        content_type = mimetypes.guess_type(audio.name)[0] or "application/octet-stream"
        quoted = audio.name.replace('"', "%22")
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = audio.stat().st_size

        def body() -> Iterator[bytes]:
            yield head
            sent = 0
            with audio.open("rb") as file:
                while chunk := file.read(CHUNK):
                    sent += len(chunk)
                    on_sent(sent / size)
                    yield chunk
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        }
        with self.open("POST", "/v1/jobs", data=body(), headers=headers, timeout=max(self.timeout, 600)) as response:
            job: dict[str, Any] = json.loads(response.read())
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}")
        return job

    def events(self, job_id: str) -> Iterator[SseEvent]:
        with self.open(
            "GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/events", headers={"Accept": "text/event-stream"}
        ) as response:
            yield from parse_sse(line.decode() for line in response)

    def follow(self, job_id: str, on_status: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Follows the job's events until it finishes; reconnects when the stream drops. Returns the final view."""
        while True:
            try:
                for event in self.events(job_id):
                    if event.event == "status":
                        job: dict[str, Any] = json.loads(event.data)
                        on_status(job)
                        if job.get("phase") in FINISHED:
                            return job
                    elif event.event == "end":
                        break
            except (CliError, OSError, ValueError):
                pass  # a dropped or timed-out stream; the job is read once more below
            job = self.job(job_id)
            on_status(job)
            if job.get("phase") in FINISHED:
                return job
            time.sleep(1)

    def transcript(self, job_id: str, format_: str) -> bytes:
        path = f"/v1/jobs/{urllib.parse.quote(job_id)}/transcript"
        with self.open("GET", path, {"format": format_}) as response:
            body: bytes = response.read()
        return body


# Commands


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _gateway(args: argparse.Namespace) -> Gateway:
    url = args.gateway or os.environ.get(ENV_GATEWAY)
    key = args.api_key or os.environ.get(ENV_API_KEY)
    if not url:
        _fail(f"no gateway URL: pass --gateway or set {ENV_GATEWAY}")
    if not key:
        _fail(f"no API key: pass --api-key or set {ENV_API_KEY} (`kubescribe keys create` makes one)")
    if not url.startswith(("http://", "https://")):
        _fail(f"the gateway URL must start with http:// or https://, not {url!r}")
    return Gateway(url, key)


def _write(output: str | None, content: bytes) -> None:
    if output in (None, "-"):
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        Path(output).write_bytes(content)
        print(f"wrote {output}", file=sys.stderr)


def _transcript_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.output or "").suffix.lstrip(".")
    return suffix if suffix in FORMATS else "txt"


def cmd_transcribe(args: argparse.Namespace) -> int:
    gateway = _gateway(args)
    audio = Path(args.audio)
    if not audio.is_file():
        _fail(f"no such file: {audio}")
    format_ = _transcript_format(args)
    fields = {
        "formats": format_,
        "model": args.model,
        "language": args.language,
        "task": args.task,
        "webhook_url": args.webhook_url,
        "vad": None if args.vad is None else str(args.vad).lower(),
        "word_timestamps": "true" if args.word_timestamps else None,
    }
    line = ProgressLine(sys.stderr)
    line.show(f"Uploading {audio.name}")
    job = gateway.submit(
        audio,
        {k: v for k, v in fields.items() if v},
        lambda done: line.show(f"{'Uploading':<9} {render_bar(done, 30)}"),
    )
    line.close()
    print(f"job {job['id']} submitted", file=sys.stderr)
    if args.no_wait:
        print(job["id"])
        return 0
    try:
        job = gateway.follow(job["id"], lambda view: line.show(render_progress(view)))
    except KeyboardInterrupt:
        line.close()
        print(f"stopped following; the job goes on (kubescribe cancel {job['id']} stops it)", file=sys.stderr)
        return 130
    line.close()
    if job["phase"] != "Succeeded":
        error = job.get("error") or {}
        _fail(f"job {job['id']} {job['phase'].lower()}: {error.get('reason', '')} {error.get('message', '')}".strip())
    _write(args.output, gateway.transcript(job["id"], format_))
    return 0


def cmd_transcript(args: argparse.Namespace) -> int:
    _write(args.output, _gateway(args).transcript(args.id, _transcript_format(args)))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    gateway = _gateway(args)
    jobs: list[dict[str, Any]] = []
    token = ""
    while len(jobs) < args.limit:
        limit = str(min(PAGE_LIMIT, args.limit - len(jobs)))
        page = gateway.json("GET", "/v1/jobs", {"phase": args.phase or "", "limit": limit, "page_token": token})
        jobs += page.get("jobs") or []
        token = page.get("next_page_token") or ""
        if not token:
            break
    if args.json:
        print(json.dumps(jobs, indent=2))
    elif jobs:
        print(jobs_table(jobs[: args.limit]))
    else:
        print("no jobs", file=sys.stderr)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    job = _gateway(args).job(args.id)
    print(json.dumps(job, indent=2) if args.json else describe_job(job))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _gateway(args).json("DELETE", f"/v1/jobs/{urllib.parse.quote(args.id)}")
    print(f"job {args.id} is being cancelled and deleted", file=sys.stderr)
    return 0


def _core_api(args: argparse.Namespace) -> Any:
    from kubernetes import client, config  # noqa: PLC0415 (only the keys commands need a cluster)

    try:
        config.load_kube_config(context=args.context)
    except (config.ConfigException, OSError) as error:
        _fail(f"cannot load the kubeconfig (KUBECONFIG or ~/.kube/config): {error}")
    return client.CoreV1Api()


def _keys_call(action: Callable[[], Any]) -> Any:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError  # noqa: PLC0415

    try:
        return action()
    except ApiException as error:
        _fail(f"the Kubernetes API said {error.status} {error.reason}: {_api_message(error)}")
    except HTTPError as error:
        _fail(f"cannot reach the Kubernetes API: {error}")


def _api_message(error: Any) -> str:
    try:
        return str(json.loads(error.body)["message"])
    except (ValueError, KeyError, TypeError):
        return str(error.body or "")


def cmd_keys_create(args: argparse.Namespace) -> int:
    from kubescribe.gateway.access import keys  # noqa: PLC0415

    api = _core_api(args)
    key = _keys_call(lambda: keys.create_key(api, args.secret_namespace, args.secret_name, args.namespace, args.name))
    print(f"API key {args.name!r} for namespace {args.namespace!r}; it is shown only this once:", file=sys.stderr)
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from kubescribe.gateway.access import keys  # noqa: PLC0415

    api = _core_api(args)
    records = _keys_call(lambda: keys.list_keys(api, args.secret_namespace, args.secret_name))
    found = [{"namespace": r.namespace, "name": r.name, "created": r.created} for r in records]
    if args.json:
        print(json.dumps(found, indent=2))
    elif found:
        print(table([("NAMESPACE", "NAME", "CREATED"), *((k["namespace"], k["name"], k["created"]) for k in found)]))
    else:
        print("no API keys", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from kubescribe.gateway.access import keys  # noqa: PLC0415

    api = _core_api(args)
    revoked = _keys_call(
        lambda: keys.revoke_key(api, args.secret_namespace, args.secret_name, args.namespace, args.name)
    )
    if not revoked:
        _fail(f"no API key named {args.name!r} in namespace {args.namespace!r}")
    print(f"revoked {revoked} key(s) named {args.name!r} in namespace {args.namespace!r}", file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubescribe", description="Transcribe audio with Kubescribe.")
    gateway = argparse.ArgumentParser(add_help=False)
    gateway.add_argument("--gateway", metavar="URL", help=f"gateway URL (default: ${ENV_GATEWAY})")
    gateway.add_argument("--api-key", metavar="KEY", help=f"API key (default: ${ENV_API_KEY})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", metavar="FILE", help="where to write the transcript (default: stdout)")
    output.add_argument("--format", choices=FORMATS, help="transcript format (default: from -o's extension, or txt)")

    transcribe = commands.add_parser(
        "transcribe", parents=[gateway, output], help="upload audio, follow the job, write the transcript"
    )
    transcribe.add_argument("audio", help="audio or video file")
    transcribe.add_argument("--model", help="Whisper model, such as tiny.en, small or large-v3")
    transcribe.add_argument("--language", help="spoken language as an ISO 639-1 code (default: detect)")
    transcribe.add_argument("--task", choices=("transcribe", "translate"), help="translate writes English")
    transcribe.add_argument("--vad", action=argparse.BooleanOptionalAction, help="skip silence (gateway default)")
    transcribe.add_argument("--word-timestamps", action="store_true", help="add word times to the json format")
    transcribe.add_argument("--webhook-url", metavar="URL", help="gets a POST when the job finishes")
    transcribe.add_argument("--no-wait", action="store_true", help="print the job's id and return at once")
    transcribe.set_defaults(handler=cmd_transcribe)

    transcript = commands.add_parser("transcript", parents=[gateway, output], help="a finished job's transcript")
    transcript.add_argument("id")
    transcript.set_defaults(handler=cmd_transcript)

    jobs = commands.add_parser("jobs", parents=[gateway], help="list jobs, newest first")
    jobs.add_argument("--phase", choices=PHASES)
    jobs.add_argument("--limit", type=_positive, default=50, help="at most this many (default: 50)")
    jobs.add_argument("--json", action="store_true", help="print the job views as JSON")
    jobs.set_defaults(handler=cmd_jobs)

    get = commands.add_parser("get", parents=[gateway], help="one job")
    get.add_argument("id")
    get.add_argument("--json", action="store_true", help="print the job view as JSON")
    get.set_defaults(handler=cmd_get)

    cancel = commands.add_parser(
        "cancel", parents=[gateway], help="cancel a job and delete it with its audio and transcripts"
    )
    cancel.add_argument("id")
    cancel.set_defaults(handler=cmd_cancel)

    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--context", help="kubeconfig context (default: the current one)")
    cluster.add_argument("--secret-namespace", default="kubescribe", help="namespace of the keys' Secret")
    cluster.add_argument("--secret-name", default="kubescribe-api-keys", help="name of the keys' Secret")
    keys = commands.add_parser("keys", help="manage API keys (needs access to the cluster)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = key_commands.add_parser("create", parents=[cluster], help="create a key; it is printed once")
    create.add_argument("--namespace", required=True, help="namespace whose jobs the key may use")
    create.add_argument("--name", required=True, help="a name for the key, such as its owner")
    create.set_defaults(handler=cmd_keys_create)
    listing = key_commands.add_parser("list", parents=[cluster], help="list keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print the keys' records as JSON")
    listing.set_defaults(handler=cmd_keys_list)
    revoke = key_commands.add_parser("revoke", parents=[cluster], help="revoke a key")
    revoke.add_argument("--namespace", required=True, help="the key's namespace")
    revoke.add_argument("--name", required=True, help="the key's name; every key of that name is revoked")
    revoke.set_defaults(handler=cmd_keys_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except CliError as error:
        print(f"kubescribe: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
