"""Schedules: cron maths (pure), the Schedules service, and the scheduler daemon."""
