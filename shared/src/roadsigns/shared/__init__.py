"""The kit every roadsigns service imports. It imports no service, model library, MLflow or FastAPI."""
