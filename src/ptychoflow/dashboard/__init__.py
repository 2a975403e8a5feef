"""The operator dashboard: runs, watcher journal, model registry and edge status on one page."""
