/* lib/tcpopts.h: TCP options: the SYN's (MSS, window scale, SACK-permitted, timestamps, and the
 * summary of every option for ctrack's counters) and, for the passive RTT, the timestamps option
 * of any segment. Both walks keep their position in map memory (see ct_parse_syn_options). */
#ifndef CT_LIB_TCPOPTS_H
#define CT_LIB_TCPOPTS_H

#include "common.h"


/* The summary of one option in a SYN (struct ct_synopts): its kind by number and by ctrack's
 * name, an RFC 6994 ExID, MPTCP's subtype. i is the option's offset in buf, len its length. */
static __always_inline void ct_synopt_note(struct ct_pkt *p, __u8 *buf, __u32 i, __u8 kind, __u8 len)
{
#ifndef CT_NO_SYNOPTS
	struct ct_synopts *so = &p->synopts;
	__u16 named = 1 << CT_TCPOPT_OTHER;
	so->kinds |= kind < 63 ? (1ULL << kind) : (1ULL << 63);
	if (kind == CT_TCPOPT_KIND_MSS)
		named = 1 << CT_TCPOPT_MSS;
	else if (kind == CT_TCPOPT_KIND_WSCALE)
		named = 1 << CT_TCPOPT_WSCALE;
	else if (kind == CT_TCPOPT_KIND_SACK_PERM)
		named = 1 << CT_TCPOPT_SACK_PERM;
	else if (kind == CT_TCPOPT_KIND_TIMESTAMPS)
		named = 1 << CT_TCPOPT_TIMESTAMPS;
	else if (kind == CT_TCPOPT_KIND_MD5)
		named = 1 << CT_TCPOPT_MD5;
	else if (kind == CT_TCPOPT_KIND_UTO)
		named = 1 << CT_TCPOPT_UTO;
	else if (kind == CT_TCPOPT_KIND_AO)
		named = 1 << CT_TCPOPT_AO;
	else if (kind == CT_TCPOPT_KIND_TFO)
		named = 1 << CT_TCPOPT_TFO;
	else if (kind == CT_TCPOPT_KIND_MPTCP) {
		named = 1 << CT_TCPOPT_MPTCP;
		if (len >= 3 && !so->mptcp_subtype)
			so->mptcp_subtype = (buf[(i + 2) & 63] >> 4) + 1;
	} else if (kind == CT_TCPOPT_KIND_EXP1 || kind == CT_TCPOPT_KIND_EXP2) {
		/* RFC 6994: a 16-bit ExID follows kind and length (shorter ones: pre-6994 use) */
		named = 1 << CT_TCPOPT_EXP;
		if (len >= 4) {
			__u16 exid = ((__u16)buf[(i + 2) & 63] << 8) | buf[(i + 3) & 63];
			if (kind == CT_TCPOPT_KIND_EXP2 && exid == CT_TCPOPT_EXID_TFO)
				named = 1 << CT_TCPOPT_TFO;
			if (!so->exid_kind[0]) {
				so->exid[0] = exid;
				so->exid_kind[0] = kind;
			} else if (!so->exid_kind[1]) {
				so->exid[1] = exid;
				so->exid_kind[1] = kind;
			}
		}
	} else if (kind >= 63 && !so->high_kind) {
		so->high_kind = kind;
	}
	so->named |= named;
#endif
}

/* SYN options: MSS, window scale, SACK-permitted, timestamps. Unknown and experimental kinds
 * (RFC 6994's 253/254, TFO cookies, MPTCP, ...) are noted in the summary (ct_synopt_note) and
 * skipped by their length; a length that runs
 * past the header is malformed. Known options of a wrong length are ignored, as Linux does.
 *
 * The option block (at most 40 bytes) is copied to the stack and walked there. The walk's
 * position lives in p, i.e. in map memory, which the verifier does not track: every iteration
 * then reaches the loop head in the same verifier state and the walk is verified about once,
 * where a position kept in a register makes it follow every combination of option lengths (a
 * 40-step walk then exceeds the verifier's budget). 40 steps cover any option block, one-byte
 * NOPs included. (bpf_loop would do too, but BCC 0.26 cannot relocate its callback.) */
static __always_inline int ct_parse_syn_options(void *opt, void *data_end, __u32 optlen,
						 struct ct_pkt *p)
{
	__u8 buf[64];
	__builtin_memset(buf, 0, sizeof(buf));
	if (optlen == 0 || optlen > 40 || opt + optlen > data_end)
		return CT_REASON_L4_TRUNCATED;
	/* Clang knows optlen <= 40 here and would drop the mask; the verifier needs to see it. */
	__u32 n = optlen;
	asm volatile("" : "+r"(n));
	if (bpf_probe_read_kernel(buf, n & 63, opt))
		return CT_REASON_L4_TRUNCATED;
	p->optpos = 0;
	for (int n = 0; n < CT_MAX_TCP_OPTIONS; n++) {
		__u32 i = p->optpos;
		if (i >= optlen)
			break;
		__u8 kind = buf[i & 63];
		if (kind == 0)            /* end of option list */
			break;
		if (kind == 1) {          /* no-operation */
			p->optpos = i + 1;
			continue;
		}
		__u8 len = buf[(i + 1) & 63];
		if (p->optcut && (i + 1 >= optlen || i + len > optlen))
			break;   /* the capture cut the block here: keep what was read */
		if (i + 1 >= optlen || len < 2 || i + len > optlen)
			return CT_REASON_TCP_BAD_OPTIONS;
		ct_synopt_note(p, buf, i, kind, len);
		if (kind == 2 && len == 4) {
			p->mss = ((__u16)buf[(i + 2) & 63] << 8) | buf[(i + 3) & 63];
		} else if (kind == 3 && len == 3) {
			__u8 ws = buf[(i + 2) & 63];
			p->wscale = ws > 14 ? 14 : ws;   /* RFC 7323: a shift above 14 is used as 14 */
			p->opt_flags |= CT_DF_WSCALE;
		} else if (kind == 4 && len == 2) {
			p->opt_flags |= CT_DF_SACK_PERM;
		} else if (kind == 8 && len == 10) {
			p->opt_flags |= CT_DF_TIMESTAMPS;
#ifndef CT_NO_RTT
			p->tsval = ((__u32)buf[(i + 2) & 63] << 24) | ((__u32)buf[(i + 3) & 63] << 16) |
				   ((__u32)buf[(i + 4) & 63] << 8) | buf[(i + 5) & 63];
			p->tsecr = ((__u32)buf[(i + 6) & 63] << 24) | ((__u32)buf[(i + 7) & 63] << 16) |
				   ((__u32)buf[(i + 8) & 63] << 8) | buf[(i + 9) & 63];
			p->has_ts = 1;
#endif
		}
		p->optpos = i + len;
	}
	return CT_REASON_NONE;
}

#ifndef CT_NO_RTT
/* The timestamps option of a segment that is not a SYN, for the passive RTT. Costs little on
 * the common layout -- NOP, NOP, TS first, as Linux and the BSDs send it: one 4-byte compare --
 * and otherwise walks at most CT_MAX_TCP_OPTIONS options for kind 8 (Windows, middleboxes). A
 * malformed or cut block only means no timestamps: the SYN-only validation stays as it was.
 * Sets has_ts, tsval, tsecr in p. Reads the packet the way ct_parse does (data/data_end). */
static __always_inline void ct_parse_ts(void *opt, void *data_end, __u32 optlen, struct ct_pkt *p)
{
	/* The common layout, NOP, NOP, TS first (Linux, the BSDs), read in place: the helper's
	 * copy below costs the fast path as much as the rest of the passive RTT together (20 ns
	 * of bench/fastpath.py's 190). For the verifier's sake the length and the pointer go
	 * through map memory first: compared directly, optlen would enter the walk below with
	 * two ranges, and the walk be verified twice; and the range check narrows only a pointer
	 * of its own identity (an offset read back, always 0), not the packet pointers the
	 * callers still hold. */
	p->optpos = optlen;
	if (*(volatile __u8 *)&p->optpos >= 12) {
		void *o = opt + *(volatile __u8 *)&p->zero;
		if (o + 12 <= data_end) {
			__u32 *w = o;   /* 4-byte loads at any alignment: x86 and arm64 allow them */
			if (w[0] == bpf_htonl(0x0101080a)) {
				p->tsval = bpf_ntohl(w[1]);
				p->tsecr = bpf_ntohl(w[2]);
				p->has_ts = 1;
				return;
			}
		}
	}
	/* The bounds as a number, not a packet-pointer comparison: a comparison gives the packet
	 * pointers still live in the callers a range of their own per outcome, and the verifier
	 * then walks everything after the parser once per outcome (pointer minus pointer is a
	 * plain number for a privileged loader). */
	__u32 avail = (__u32)((long)data_end - (long)opt);
	if (optlen < 10 || optlen > 40 || optlen > avail)
		return;
	__u8 buf[64];
	__builtin_memset(buf, 0, sizeof(buf));
	__u32 n = optlen;
	asm volatile("" : "+r"(n));
	if (bpf_probe_read_kernel(buf, n & 63, opt))
		return;
	/* (the common layout was read in place above: whatever remains is walked) */
	p->optpos = 0;
	for (int k = 0; k < CT_MAX_TCP_OPTIONS; k++) {
		__u32 i = p->optpos;   /* in map memory: see ct_parse_syn_options */
		if (i + 1 >= optlen)
			break;
		__u8 kind = buf[i & 63];
		if (kind == 0)
			break;
		if (kind == 1) {
			p->optpos = i + 1;
			continue;
		}
		__u8 len = buf[(i + 1) & 63];
		if (len < 2 || i + len > optlen)
			break;
		if (kind == 8 && len == 10) {
			p->tsval = ((__u32)buf[(i + 2) & 63] << 24) | ((__u32)buf[(i + 3) & 63] << 16) |
				   ((__u32)buf[(i + 4) & 63] << 8) | buf[(i + 5) & 63];
			p->tsecr = ((__u32)buf[(i + 6) & 63] << 24) | ((__u32)buf[(i + 7) & 63] << 16) |
				   ((__u32)buf[(i + 8) & 63] << 8) | buf[(i + 9) & 63];
			p->has_ts = 1;
			break;
		}
		p->optpos = i + len;
	}
}
#endif

#endif /* CT_LIB_TCPOPTS_H */
