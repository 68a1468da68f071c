"""How audio comes in: the upload streamed to S3 while it is received, the check that it is audio, and the
TranscriptionJob built and created for it."""
