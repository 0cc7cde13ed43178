"""churn-monitor: a streaming churn monitor on Faust, Kafka and river."""

__version__ = "0.1.0"
