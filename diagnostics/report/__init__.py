"""Report formats, one module each, over the one :class:`~diagnostics.report.model.Report`."""

from diagnostics.report.json import read_json, write_json
from diagnostics.report.model import SCHEMA, Report

__all__ = ["SCHEMA", "Report", "read_json", "write_json"]
