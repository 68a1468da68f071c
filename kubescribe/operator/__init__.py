"""The operator: it admits TranscriptionJobs, runs each in a batch/v1 Job and mirrors the Job's state into the
job's status. `builders`, `status` and `queue` are the pure parts; the kopf handlers call them."""
