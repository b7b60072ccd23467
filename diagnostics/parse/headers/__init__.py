"""What the headers of a redirected message tell, one analysis per module.

- :mod:`~.message`: header fields and MIME parts, read safely (shared by the others).
- :mod:`~.retention`: whether the retained headers, the structure and the body arrived as sent.
- :mod:`~.received`: the Received chain, its hops and delays.
- :mod:`~.loops`: mail loops.
- :mod:`~.authres`: Authentication-Results.
- :mod:`~.arc`: the ARC chain's structure.
- :mod:`~.family`: the server family that passed the message on.
- :mod:`~.forwarding`: redirect or forward (the style), its evidence and its fix.
- :mod:`~.analysis`: all of them at once, as ``maildiag headers`` reports them.

Pure functions of bytes (or parsed messages): no network, no clock. Everything here reads
text written by strangers; nothing raises for a malformed header, it is reported or skipped.
:func:`diagnostics.report.terminal.printable` makes such text harmless for a terminal.
"""
