"""The operator's Streamlit overview: reads only kpis_v7.json and positions_v7.json, formats them.

Streamlit calls live in `app.py` and the panel modules; file reads live in `data.py`; the
builders (`aum_slices`, `positions_table`, `freshness`, `charts`, `views`) are pure; `stamp_cache`
caches what is built from a published file by that file's stamp.
"""
