"""The `kubescribe` command: its argument parser, one function per command, and `main`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from kubescribe.cli.client import PHASES, CliError, GatewayClient
from kubescribe.cli.render import (
    ProgressBlock,
    ProgressLine,
    describe_job,
    jobs_table,
    render_bar,
    render_batch,
    render_progress,
    table,
)

FORMATS = ("json", "txt", "srt", "vtt", "tsv")
ENV_GATEWAY = "KUBESCRIBE_GATEWAY_URL"
ENV_API_KEY = "KUBESCRIBE_API_KEY"
PAGE_LIMIT = 100
"""The most jobs the gateway lists in one page."""
BATCH_PREFIX = "tb-"
"""How a batch's id begins; a job's begins with tj-."""


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _gateway(args: argparse.Namespace) -> GatewayClient:
    url = args.gateway or os.environ.get(ENV_GATEWAY)
    key = args.api_key or os.environ.get(ENV_API_KEY)
    if not url:
        _fail(f"no gateway URL: pass --gateway or set {ENV_GATEWAY}")
    if not key:
        _fail(f"no API key: pass --api-key or set {ENV_API_KEY} (`kubescribe keys create` makes one)")
    if not url.startswith(("http://", "https://")):
        _fail(f"the gateway URL must start with http:// or https://, not {url!r}")
    return GatewayClient(url, key)


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


def _submission_fields(args: argparse.Namespace, format_: str) -> dict[str, str]:
    fields = {
        "formats": format_,
        "model": args.model,
        "language": args.language,
        "task": args.task,
        "webhook_url": args.webhook_url,
        "vad": None if args.vad is None else str(args.vad).lower(),
        "word_timestamps": "true" if args.word_timestamps else None,
        "prompt": args.prompt,
        "hotwords": args.hotwords,
        "beam_size": None if args.beam_size is None else str(args.beam_size),
        "temperature": None if args.temperature is None else str(args.temperature),
        "diarize": "true" if args.diarize else None,
        "speakers": None if args.speakers is None else str(args.speakers),
        "queue": args.queue,
    }
    return {k: v for k, v in fields.items() if v}


def cmd_transcribe(args: argparse.Namespace) -> int:
    gateway = _gateway(args)
    audio = [Path(path) for path in args.audio]
    for path in audio:
        if not path.is_file():
            _fail(f"no such file: {path}")
    if len(audio) > 1:
        return _transcribe_batch(args, gateway, audio)
    format_ = _transcript_format(args)
    line = ProgressLine(sys.stderr)
    line.show(f"Uploading {audio[0].name}")
    job = gateway.submit(
        audio[0],
        _submission_fields(args, format_),
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


def transcript_paths(audio: list[Path], directory: Path, format_: str) -> list[Path]:
    """Where each file's transcript goes: into `directory`, named after the file with the format's extension."""
    paths = [directory / f"{path.stem}.{format_}" for path in audio]
    for path in paths:
        if paths.count(path) > 1:
            _fail(f"several files would write {path}: transcribe files of the same name apart")
    return paths


def _transcribe_batch(args: argparse.Namespace, gateway: GatewayClient, audio: list[Path]) -> int:
    """Several files: one batch, one progress line per file and a total, each transcript written into the output
    directory. Fails (1) when any file did not become a job or its job did not succeed."""
    format_ = args.format or "txt"
    directory = Path(args.output or ".")
    if directory.exists() and not directory.is_dir():
        _fail(f"{directory} is not a directory: with several files, -o names the directory for their transcripts")
    outputs = transcript_paths(audio, directory, format_)
    line = ProgressLine(sys.stderr)
    line.show(f"Uploading {len(audio)} files")
    batch = gateway.submit_batch(
        audio,
        _submission_fields(args, format_),
        lambda done: line.show(f"{'Uploading':<9} {render_bar(done, 30)} {len(audio)} files"),
    )
    line.close()
    files = {job["id"]: job["index"] for job in batch["jobs"]}
    print(f"batch {batch['id']} submitted: {len(files)} of {len(audio)} files", file=sys.stderr)
    for failure in batch["not_created"]:
        print(f"{audio[failure['index']]}: not submitted: {failure['error']['message']}", file=sys.stderr)
    if args.no_wait:
        print(batch["id"])
        return 1 if batch["not_created"] else 0
    names = {job_id: audio[index].name for job_id, index in files.items()}
    block = ProgressBlock(sys.stderr)
    try:
        view = gateway.follow_batch(batch["id"], lambda view: block.show(*render_batch(view, names)))
    except KeyboardInterrupt:
        print(f"stopped following; the batch goes on (kubescribe cancel {batch['id']} stops it)", file=sys.stderr)
        return 130
    directory.mkdir(parents=True, exist_ok=True)
    failed = bool(batch["not_created"])
    for file in view["files"]:
        source = audio[files[file["id"]]]
        if file["phase"] != "Succeeded":
            failed = True
            reason = f"{file.get('reason') or ''} {file.get('message') or ''}".strip()
            print(f"{source}: job {file['id']} {file['phase'].lower()}: {reason}".rstrip(": "), file=sys.stderr)
            continue
        _write(str(outputs[files[file["id"]]]), gateway.transcript(file["id"], format_))
    return 1 if failed else 0


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
    if args.id.startswith(BATCH_PREFIX):
        done = _gateway(args).json("DELETE", f"/v1/batches/{urllib.parse.quote(args.id)}")
        print(
            f"batch {args.id}: {len(done['cancelled'])} jobs are being cancelled and deleted, "
            f"{len(done['kept'])} finished ones kept",
            file=sys.stderr,
        )
        return 0
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


def _decoding_options() -> argparse.ArgumentParser:
    """How `transcribe` has the audio decoded: the gateway's form fields, each left to the gateway when not given."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--model", help="Whisper model, such as tiny.en, small or large-v3")
    options.add_argument("--language", help="spoken language as an ISO 639-1 code (default: detect)")
    options.add_argument("--task", choices=("transcribe", "translate"), help="translate writes English")
    options.add_argument("--vad", action=argparse.BooleanOptionalAction, help="skip silence (gateway default)")
    options.add_argument("--word-timestamps", action="store_true", help="add word times to the json format")
    options.add_argument("--prompt", help="text to condition the start on, such as names spelt as you want them")
    options.add_argument("--hotwords", help="words likely spoken, such as rare names, to listen for throughout")
    options.add_argument("--beam-size", type=int, metavar="N", help="beam search width, 1 to 20 (default 5)")
    options.add_argument("--temperature", type=float, metavar="T", help="sampling temperature, 0 to 1 (default 0)")
    options.add_argument("--diarize", action="store_true", help="label who speaks when (SPEAKER_00, ...)")
    options.add_argument(
        "--speakers", type=int, metavar="N", help="how many people speak, when known (implies --diarize)"
    )
    options.add_argument(
        "--queue", help="the Kueue LocalQueue of your namespace to run in, where the cluster has Kueue"
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubescribe", description="Transcribe audio with Kubescribe.")
    gateway = argparse.ArgumentParser(add_help=False)
    gateway.add_argument("--gateway", metavar="URL", help=f"gateway URL (default: ${ENV_GATEWAY})")
    gateway.add_argument("--api-key", metavar="KEY", help=f"API key (default: ${ENV_API_KEY})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write the transcript (default: stdout); with several files, the directory for theirs "
        "(default: the current one)",
    )
    output.add_argument("--format", choices=FORMATS, help="transcript format (default: from -o's extension, or txt)")

    transcribe = commands.add_parser(
        "transcribe",
        parents=[gateway, output, _decoding_options()],
        help="upload audio, follow the job, write the transcript",
    )
    transcribe.add_argument("audio", nargs="+", help="audio or video files; several are submitted as one batch")
    transcribe.add_argument("--webhook-url", metavar="URL", help="gets a POST when the job finishes")
    transcribe.add_argument(
        "--no-wait", action="store_true", help="print the job's (or the batch's) id and return at once"
    )
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
        "cancel",
        parents=[gateway],
        help="cancel a job and delete it with its audio and transcripts; or a batch's jobs not finished (tb-...)",
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
