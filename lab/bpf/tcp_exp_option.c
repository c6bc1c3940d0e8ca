/* tcp_exp_option.c: a sock_ops program (TCP-BPF) that writes an RFC 6994 experimental TCP option
 * -- kind LAB_OPT_KIND (253 or 254), length 4 + LAB_OPT_DATA_LEN, the 16-bit ExID LAB_OPT_EXID,
 * then LAB_OPT_DATA_LEN bytes counting up from 1 -- into every segment of the sockets of the
 * cgroup it is attached to: SYNs, SYN/ACKs, data and pure ACKs. The tcp-options lab scenario
 * (lab/scenarios/tcp_options.py, ctrack/labsockops.py) uses it to check that the tracker passes
 * such options untouched and names their ExID.
 *
 * The header-option callbacks are off by default: each socket turns them on with
 * BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG when it connects (its SYN is written after that), listens
 * (the SYN/ACKs of its request sockets follow the listener's flags) or is established (the
 * socket accept() returns). Then, per segment, HDR_OPT_LEN_CB reserves the room and
 * WRITE_HDR_OPT_CB stores the bytes; the kernel pads the options to a multiple of 4 with NOPs.
 * uapi headers only.
 */
#include <uapi/linux/bpf.h>

#ifndef LAB_OPT_KIND
#define LAB_OPT_KIND 253
#endif
#ifndef LAB_OPT_EXID
#define LAB_OPT_EXID 0xC7C7
#endif
#ifndef LAB_OPT_DATA_LEN
#define LAB_OPT_DATA_LEN 2
#endif
#define LAB_OPT_LEN (4 + LAB_OPT_DATA_LEN)

int tcp_exp_option(struct bpf_sock_ops *skops)
{
	__u8 opt[LAB_OPT_LEN];
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
					  BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		bpf_reserve_hdr_opt(skops, LAB_OPT_LEN, 0);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		opt[0] = LAB_OPT_KIND;
		opt[1] = LAB_OPT_LEN;
		opt[2] = LAB_OPT_EXID >> 8;
		opt[3] = LAB_OPT_EXID & 0xff;
#pragma unroll
		for (int i = 0; i < LAB_OPT_DATA_LEN; i++)
			opt[4 + i] = i + 1;
		bpf_store_hdr_opt(skops, opt, sizeof(opt), 0);
		break;
	}
	return 1;
}
