"""HTTP gateway: validates uploads, records jobs in Postgres, enqueues them by task name."""
