"""Synchronous write mode (issue 14): a FUSE file system that replicates before it returns.

- :mod:`.records`: the replication records (frozen dataclasses). Pure.
- :mod:`.mapping`: which file-system operation becomes which records, and which
  operations are sync points (they return only once every reachable standby
  has the change on disk). Pure: the names of every inode the kernel knows.
- :mod:`.stream`: the byte stream of records (versioned, length-prefixed, bounded). Pure.
- :mod:`.apply`: the standby's side: applies a stream under one directory, fsyncs,
  acknowledges; refuses a stale sender (the epoch guard of :mod:`..sync.receive`).
- :mod:`.channel`: the active's side of each replication channel (a subprocess:
  ssh to the standby's forced command; locally the applier).
- :mod:`.fs`: the pass-through file system mounted over the directory itself.
- ``python -m mosqit_failover.syncfs mount|apply ...``: both as processes of their own.

See docs/sync-mode.md.
"""
