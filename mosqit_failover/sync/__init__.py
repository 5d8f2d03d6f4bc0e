"""Directory sync: inotify-driven rsync over ssh from the active node to the standby.

- :mod:`.plan`: pure parts: the dirty set and its coalescing deadline, backoff.
- :mod:`.commands`: pure argv building for ssh and rsync, rsync exit codes.
- :mod:`.watch`: the inotify reader of one tree (its watches: :mod:`.watch_tree`,
  the system calls: :mod:`.inotify`); reports queue overflow, a lost root, the
  watch limit and filesystems mounted inside, not only the files that changed.
- :mod:`.proc`: the only module here that starts processes (ssh master, rsync).
- :mod:`.engine`: one engine per synced directory (asyncio task).
- :mod:`.manager`: what the daemon uses: start(epoch), stop(), status().
- :mod:`.receive`: the forced command on the receiving side (epoch check, path check).
"""
