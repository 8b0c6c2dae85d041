"""Not a package to import: this file makes pytest name docs/conftest.py
``docs.conftest``, apart from tests/conftest.py."""
