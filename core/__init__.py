"""The contract every facestream role shares: settings, event schema, Redis keys and helpers.

`core` imports no role package (ingest, worker, models, training, facestream).
"""
