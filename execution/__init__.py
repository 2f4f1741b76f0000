"""The executor-side write path (state_publish, sync_state) and the demo executor.

Everything here calls the publisher's stages and formatter; no KPI rule is implemented twice.
"""
