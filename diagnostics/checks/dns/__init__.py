"""DNS checks, one module per record family: ``dns.mx`` (:mod:`.mx`), ``dns.smtp_host``
(:mod:`.smtp_host`), ``dns.spf`` (:mod:`.spf`) and ``dns.dmarc`` (:mod:`.dmarc`); what they
share is in :mod:`.shared`.

I/O tier: :mod:`diagnostics.net.dns` (:func:`query_dns`, :class:`DNSAnswer`, and
:class:`DNSQueries`, the DNS as one finding sees it); a finding says which resolver answered,
and when the run's resolver does not work every DNS finding says so instead of blaming a name.
Each family module holds its pure classifier (``classify_mx``, ``classify_smtp_host``,
``classify_spf``, ``classify_dmarc``) and its registered check. Registered checks make one
finding per company or subcompany. Where two of them share a domain (or an SMTP host) it is
checked once: the first subject's finding says so in its detail, the others get a ``skip``
pointing to it.

Importing this package registers the four checks; it imports the modules in registration
order, which is the order of the report.
"""

# isort: off
from diagnostics.checks.dns import mx
from diagnostics.checks.dns import smtp_host
from diagnostics.checks.dns import spf
from diagnostics.checks.dns import dmarc

# isort: on

__all__ = ["dmarc", "mx", "smtp_host", "spf"]
