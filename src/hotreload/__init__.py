"""hotreload: serve a git-backed gitsheets data repository from memory, and
hot-reload it atomically, without a restart, when the data branch moves."""

__version__ = "0.1.0"
