/* passthrough.c: the empty bump in the wire, for bench/throughput.py's baselines.
 *
 * Does nothing but what the tracker's fast path ends with: a packet arriving on interface A
 * leaves by B and the other way round (bpf_redirect, as kernel/tracker.c does), with no parsing
 * and no map. PEER_A and PEER_B (ifindexes) come from the loader's -D flags. The same text
 * gives an XDP entry point and a TC (SCHED_CLS, direct action) one.
 */
#include <uapi/linux/bpf.h>

#ifndef PEER_A
#error "PEER_A and PEER_B (ifindexes) must be defined"
#endif

static __always_inline __u32 peer_of(__u32 in)
{
	return in == PEER_A ? PEER_B : PEER_A;
}

int pt_xdp(struct xdp_md *ctx)
{
	return bpf_redirect(peer_of(ctx->ingress_ifindex), 0);
}

int pt_tc(struct __sk_buff *skb)
{
	return bpf_redirect(peer_of(skb->ingress_ifindex), 0);
}

/* The TC pass-through plus the one thing kernel/tracker.c's ct_tc does to every packet before
 * parsing: pull the first 256 bytes into the linear part when they are not there (a GSO
 * super-packet from a local TCP sender carries little more than its headers linear). Not a
 * baseline: bench/throughput.py's profile uses it to tell that cost from the rest. */
int pt_tc_pull(struct __sk_buff *skb)
{
	__u32 want = skb->len < 256 ? skb->len : 256;
	if (skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);
	return bpf_redirect(peer_of(skb->ingress_ifindex), 0);
}
