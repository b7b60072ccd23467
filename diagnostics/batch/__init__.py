"""``maildiag batch``: many accounts audited at once, each with its report folder, and an index.

- :mod:`.model`: one account's run (:class:`BatchRun`).
- :mod:`.plan`: report folders, and what an earlier run finished (``--resume``).
- :mod:`.local`: many audits in one process's event loop, bounded per process and per host.
- :mod:`.distributed`: the audits on a Dask distributed cluster (``--scheduler``; the ``dask``
  extra).
- :mod:`.runner`: processes, progress, notebooks, Ctrl-C, the index.
- :mod:`.index`: ``index.html`` and its orders, ``index.json``.
"""

from diagnostics.batch.index import render_index, write_index
from diagnostics.batch.model import BatchRun
from diagnostics.batch.runner import BatchInterrupted, run_batch

__all__ = ["BatchInterrupted", "BatchRun", "render_index", "run_batch", "write_index"]
