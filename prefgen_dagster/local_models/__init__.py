"""Models made or unpacked locally, with no hub: tiny random models for tests, real ones from
PyPI packages."""
