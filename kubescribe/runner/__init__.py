"""The runner: fetch one TranscriptionJob's audio, transcribe it with faster-whisper, write the transcripts
to S3 and report progress and result into the job's status. Run it as `python -m kubescribe.runner`;
`kubescribe.contract` lists the environment it reads and the exit codes it ends with."""
