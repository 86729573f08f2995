"""History: the queue state per second (summaries), the summarizer daemon that writes
it, roll-ups and retention."""
