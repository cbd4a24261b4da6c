"""Node-side operations: Prometheus metrics, /healthz, systemd notify and watchdog, live status, image preview."""
