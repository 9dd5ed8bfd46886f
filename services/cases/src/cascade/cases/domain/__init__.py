"""The cases domain: pure Python, no framework imports (checked by import-linter)."""
