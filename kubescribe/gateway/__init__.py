"""The REST gateway: uploads audio to S3, submits TranscriptionJobs, serves their status and transcripts."""
