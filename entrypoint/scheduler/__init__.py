"""Code loaded inside Airflow's scheduler process.

The Celery executor imports `entrypoint.worker.celery_config` (through
`[celery] celery_config_options`) in the scheduler as in a worker; that module
installs what is here. Like everything that changes Airflow's behaviour, each
change goes through `entrypoint.private_apis` first: when its assumption no
longer holds, nothing is changed and Airflow behaves as it does unpatched.

Rules: nothing here runs at container start; importing this package itself
imports nothing.
"""
