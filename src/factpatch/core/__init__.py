"""The core every part shares: loading models and their architecture adapters (models), named
hook points (hooks), tokenisation (tokens), seeded generation (generate), the cache directory and
atomic writes (cache), and the one error type (errors)."""
