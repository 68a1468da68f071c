"""The HTTP API: /v1/jobs, OpenAI's /v1/audio, operations; and the shapes of what they answer."""
