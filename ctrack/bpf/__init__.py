"""bpf(2) plumbing: the syscall, map batch operations, BPF_PROG_TEST_RUN, preflight checks."""
