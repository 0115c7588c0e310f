"""Suite-wide fixtures. Helpers shared by test modules live in tests/armtest.py (import armtest)."""
from armtest import fixtures_dir  # noqa: F401  (re-exported as a fixture)
