"""The operator's Streamlit overview: reads only kpis_v7.json and positions_v7.json, formats them.

Streamlit calls live in `app.py` and the panel modules; file reads live in `data.py`; the
helpers (`nav_helpers`, `live_helpers`, `freshness`, `charts`) are pure.
"""
