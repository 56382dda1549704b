"""Tracker worker: the only writer of job progress and results to PostgreSQL; logs their aggregates to MLflow."""
