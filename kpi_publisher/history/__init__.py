"""The NAV history: an embedded SQLite store, the executor's NAV logs imported into it, and the
downsampling that keeps peaks and troughs for the published curves."""
