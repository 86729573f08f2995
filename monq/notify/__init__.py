"""Notifications: rules, templates, senders and the webhook policy (pure parts), the
deliveries service, and the notifier daemon."""
