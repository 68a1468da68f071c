"""Where the gateway keeps things: TranscriptionJobs in Kubernetes (and one shared watch of them), bytes in S3."""
