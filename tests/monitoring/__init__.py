"""Static and process-level checks of the monitoring half: Prometheus rules,
Alertmanager routing, Grafana dashboards, Dockerfile and docker-compose."""
