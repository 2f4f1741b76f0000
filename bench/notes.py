"""What was changed to meet each target, or why it is not met: written after measuring.

Keyed by target id (report.TARGET_IDS) plus "general". The report prints a note beside its
target whatever the verdict, so every note must say what was done, not what was measured.
"""

from __future__ import annotations

NOTES: dict[str, str] = {}
