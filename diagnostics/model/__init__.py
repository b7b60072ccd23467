"""The product's typed values: plain frozen dataclasses that every layer reads.

:mod:`diagnostics.model.account` is the account (company, subcompanies, SMTP settings);
:mod:`diagnostics.model.validate` builds it from plain mappings by the field rules. Neither
imports pydantic or YAML, so that ``maildiag smtp`` starts fast.
"""
