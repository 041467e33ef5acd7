"""Helpers the tests share: real faults, servers, data. Fixtures live in conftest.py."""
