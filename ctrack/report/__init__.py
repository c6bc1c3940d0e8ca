"""ctrack-report: collect.py records what the tracker, the endpoints' kernels, netfilter and a
capture saw at the same time; align.py compares them (pure functions); render.py writes the
terminal summary, report.json and report.html; cli.py is the tool."""
