"""Check families, one module or package each: ``config``, ``dns``, ``smtp``, ``allowlist``,
``redirect``, ``headers``, ``sender``.

Importing a family module registers its checks; :func:`diagnostics.registry.all_checks`
imports them all, :func:`diagnostics.registry.select` only those it is asked for.
"""
