"""Test helpers: synthetic images, hand-built file formats and small image measures (numpy only)."""
