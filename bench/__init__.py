"""Daily-volume benchmark harness (never collected by pytest; see the README for commands)."""
