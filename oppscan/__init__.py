"""oppscan: opportunity scans behind a multi-worker web service."""
