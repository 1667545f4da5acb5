"""The webhook notifier: a Celery worker on its own CPU queue (floor only, no ML). (#10)"""
