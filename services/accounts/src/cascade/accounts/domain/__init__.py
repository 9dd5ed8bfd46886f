"""The accounts domain: pure Python, no framework imports (checked by import-linter)."""
