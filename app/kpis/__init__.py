"""Stateful streams (faust-streaming): KPIs over `validated` + `feedback`, the append-only `audit` log, and the
`feedback` producer path. See docs/kpis.md."""
