"""Operations: Prometheus metrics, structured logs without personal data, optional tracing."""
