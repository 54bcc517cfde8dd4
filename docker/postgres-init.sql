-- One PostgreSQL server, one database per tool. Runs once, when the postgres volume is new
-- (mounted into /docker-entrypoint-initdb.d by docker/docker-compose.yml); the owner is
-- $POSTGRES_USER, the user the entrypoint runs this script as.
CREATE DATABASE mlflow;       -- MLflow tracking + model registry (mlflow server --backend-store-uri)
CREATE DATABASE mlflow_auth;  -- MLflow basic-auth users and permissions (its own migrations)
CREATE DATABASE prefect;      -- Prefect server (PREFECT_API_DATABASE_CONNECTION_URL)
CREATE DATABASE optuna;       -- Optuna RDB storage (callqa tune --storage postgresql://...)
CREATE DATABASE review;       -- human review: scored calls, reviews, users (CALLQA_REVIEW_DB_URL)
