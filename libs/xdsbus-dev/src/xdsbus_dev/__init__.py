"""Development tools of xdsbus: the echo backend, `xdsbus up`, the test and benchmark harness."""
