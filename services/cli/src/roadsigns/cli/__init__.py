"""The `roadsigns` command: the pipeline in one process, no server needed."""
