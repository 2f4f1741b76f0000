"""hedge-kpi: turns the executor's state files into kpis_v7.json and positions_v7.json."""

__version__ = "0.1.0"
