"""The legal domain: pure Python, no framework imports (checked by import-linter)."""
