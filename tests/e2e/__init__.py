"""End-to-end tests written from the documentation only (docs/formats.md, docs/api.md, README.md)."""
