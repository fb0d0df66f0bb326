-- One database per service on the shared PostgreSQL (run once, on first start).
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
