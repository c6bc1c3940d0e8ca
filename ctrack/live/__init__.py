"""A running tracker: pins, attachments, pinned maps, collector, event bus, metrics."""
