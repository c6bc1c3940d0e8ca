"""The tracker (kernel/ built by BCC) and what reads its data: flows, events, stats, RTT."""
