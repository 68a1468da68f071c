"""The node's model cache: one server per node (a DaemonSet) that keeps the model files runner pods read from the
store, so that a model downloads from the store once per node, not once per job.

- `settings`: what the chart configures.
- `disk`: the cache's directory: each object version filled once and atomically, the least recently used evicted
  beyond a size cap.
- `app`: the HTTP side: a caller shows a presigned URL of the store, the cache checks it with the store and answers
  the object's bytes.
"""
