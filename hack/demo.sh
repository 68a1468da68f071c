#!/usr/bin/env bash
# The main job on the local cluster (after `make up`, which installs the operator and the gateway): upload
# a spoken sample to MinIO, apply a TranscriptionJob, follow its progress and print the transcript; then
# the same audio through the REST gateway with the `kubescribe` command.
set -euo pipefail
cd "$(dirname "$0")/.."
source .local/env
py=.venv/bin/python

sample=.local/demo/sample.wav
mkdir -p "$(dirname "$sample")"
espeak-ng -s 150 -w "$sample" "Kubescribe makes a transcription a Kubernetes resource. \
An operator queues each job, runs a faster whisper runner on a GPU node, and writes the transcripts to S3."
$py - "$sample" <<'PY'
import os, sys
from urllib.parse import urlsplit
from minio import Minio
endpoint = urlsplit(os.environ["AWS_ENDPOINT_URL"])
s3 = Minio(endpoint.netloc, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], secure=False)
s3.fput_object("audio", "default/demo/sample.wav", sys.argv[1])
PY
echo "uploaded s3://audio/default/demo/sample.wav"

kubectl delete transcriptionjob demo --ignore-not-found --wait >/dev/null
kubectl apply -f - <<'YAML'
apiVersion: kubescribe.io/v1alpha1
kind: TranscriptionJob
metadata: {name: demo, namespace: default}
spec:
  source: {s3: {bucket: audio, key: default/demo/sample.wav}}
  model: tiny.en
  outputs: {formats: [json, txt, srt, vtt], s3: {bucket: transcripts, prefix: default/demo/}}
  resources: {gpu: 1}
YAML
for _ in $(seq 1 120); do
  phase=$(kubectl get tj demo -o jsonpath='{.status.phase}')
  echo "  phase=${phase:-Pending} progress=$(kubectl get tj demo -o jsonpath='{.status.progress.percent}')%"
  case $phase in Succeeded|Failed|Cancelled) break ;; esac
  sleep 2
done
kubectl get tj demo
[[ $phase == Succeeded ]] || { kubectl get tj demo -o jsonpath='{.status.message}'; echo; exit 1; }
echo "--- s3://transcripts/default/demo/sample.txt"
$py - <<'PY'
import os
from urllib.parse import urlsplit
from minio import Minio
endpoint = urlsplit(os.environ["AWS_ENDPOINT_URL"])
s3 = Minio(endpoint.netloc, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], secure=False)
print(s3.get_object("transcripts", "default/demo/sample.txt").read().decode())
PY

echo
echo "--- the same audio through the gateway: kubescribe transcribe $sample --format srt"
.venv/bin/kubescribe transcribe "$sample" --format srt
