from __future__ import annotations

from pydantic import BaseModel, Field


class KpiSettings(BaseModel):
    """The faust-streaming KPI / audit app (streams/kpis)."""

    app_id: str = "assetstream-kpis"
    web_port: int = Field(6066, description="faust web view (JSON KPIs, Prometheus gauges)")
    data_dir: str = Field("/tmp/assetstream-kpis", description="faust local table state")
