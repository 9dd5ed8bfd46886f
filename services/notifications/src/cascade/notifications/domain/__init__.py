"""The notifications domain: pure Python, no framework imports (checked by import-linter)."""
