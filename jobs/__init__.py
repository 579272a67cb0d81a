"""Cron-like jobs that belong to no single lead, run by APScheduler in the API process."""
