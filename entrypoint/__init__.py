"""airflow-ecs: the entrypoint runtime of the airflow-ecs images."""

__version__ = "0.1.0"
