"""ECS deployment: render and validate the task definitions, services, scaling and IAM
policies from a settings file, and deploy them with boto3 (`airflow-ecs render|deploy`)."""
