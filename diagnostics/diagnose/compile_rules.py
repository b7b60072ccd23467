"""Refresh ``diagnostics/data/diagnosis_rules.compiled.json`` after editing the rules:

    python -m diagnostics.diagnose.compile_rules

The compiled file is what ``maildiag diagnose`` reads at start-up while it names the YAML
file's fingerprint; a stale one is ignored (the YAML file is read) and fails the test suite.
"""

from __future__ import annotations

from diagnostics.diagnose.rules import write_compiled

if __name__ == "__main__":
    print(f"wrote {write_compiled()}")
