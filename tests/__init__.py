"""facestream tests. Shared fixtures: tests/conftest.py; real services: testkit/."""
