"""ctrack-top: a live, full-screen view of a running tracker."""
