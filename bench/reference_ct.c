/* reference_ct.c: the smallest program that still does a conntrack's established-path work, the
 * yardstick bench/fastpath.py measures the tracker's fast path against.
 *
 * Per packet: parse Ethernet, IPv4 and TCP with bounds checks; order the two endpoints so both
 * directions share one key; one hash lookup; under the entry's bpf_spin_lock, count the packet
 * and its bytes for its direction and set last-seen from the same coarse clock the tracker
 * reads. A miss inserts the flow (so the first packet sets it up); anything not IPv4/TCP passes
 * untouched. No state machine, no window checks, no statistics, no events: what the tracker
 * costs beyond this is what its tracking costs. One source gives an XDP entry point (ref_xdp)
 * and a TC one (ref_tc, direct packet access to the linear part, as the tracker does).
 *
 * Built with -DPEER_A=<ifindex> -DPEER_B=<ifindex> (bench/throughput.py), both entry points end
 * as bench/passthrough.c and the tracker's wire mode do: bpf_redirect to the other interface.
 * Without them (bench/fastpath.py's BPF_PROG_TEST_RUN) they return pass.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>

#ifndef REF_TABLE_SIZE
#define REF_TABLE_SIZE 65536
#endif

/* Room for IPv6 addresses, as any dual-stack table needs (the tracker's struct ct_key is the
 * same 40 bytes): the hash over the key is part of the lookup's cost. IPv4 uses the first word. */
struct ref_addr {
	__be32 w[4];
};

struct ref_key {
	struct ref_addr addr[2];   /* not __be32 [2][4]: BCC 0.26 sizes 2-D arrays wrongly */
	__be16 port[2];
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct ref_entry {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 packets[2];
	__u64 bytes[2];
	__u64 last_seen;
};

/* preallocated like the tracker's table: no allocation on the packet path */
BPF_TABLE("hash", struct ref_key, struct ref_entry, ref_flows, REF_TABLE_SIZE);

/* 0 = counted, 1 = not IPv4/TCP or malformed (passed untouched either way) */
static __always_inline int ref_track(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
		return 1;
	struct iphdr *iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->version != 4 || iph->ihl < 5 ||
	    iph->protocol != IPPROTO_TCP)
		return 1;
	struct tcphdr *th = (void *)iph + iph->ihl * 4;
	if ((void *)(th + 1) > data_end)
		return 1;

	struct ref_key k = {};
	__u32 side = iph->saddr > iph->daddr ||
		     (iph->saddr == iph->daddr && th->source > th->dest);
	k.addr[side].w[0] = iph->saddr;
	k.addr[side ^ 1].w[0] = iph->daddr;
	k.port[side] = th->source;
	k.port[side ^ 1] = th->dest;
	k.proto = IPPROTO_TCP;
	k.family = 4;
	__u64 len = ntohs(iph->tot_len);
	__u64 now = bpf_ktime_get_coarse_ns();

	struct ref_entry *e = ref_flows.lookup(&k);
	if (!e) {
		struct ref_entry ne = {};
		ne.packets[side] = 1;
		ne.bytes[side] = len;
		ne.last_seen = now;
		ref_flows.insert(&k, &ne);
		return 0;
	}
	bpf_spin_lock(&e->lock);
	e->packets[side] += 1;
	e->bytes[side] += len;
	e->last_seen = now;
	bpf_spin_unlock(&e->lock);
	return 0;
}

int ref_xdp(struct xdp_md *ctx)
{
	ref_track((void *)(long)ctx->data, (void *)(long)ctx->data_end);
#ifdef PEER_A
	return bpf_redirect(ctx->ingress_ifindex == PEER_A ? PEER_B : PEER_A, 0);
#else
	return XDP_PASS;
#endif
}

int ref_tc(struct __sk_buff *skb)
{
	ref_track((void *)(long)skb->data, (void *)(long)skb->data_end);
#ifdef PEER_A
	return bpf_redirect(skb->ingress_ifindex == PEER_A ? PEER_B : PEER_A, 0);
#else
	return TC_ACT_OK;
#endif
}
