"""RQ worker: runs registration jobs from the queue (pipeline loaded once per process)."""
