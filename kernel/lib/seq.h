/* lib/seq.h: sequence-space arithmetic, and the one note on direction indexes.
 *
 * Direction masks. A flow's halves are arrays of two (e->dir[], e->rtt[], e->synopts[],
 * z->dir[]) indexed by a packet's direction d: 0 (CT_DIR_ORIG) or 1 (CT_DIR_REPLY). The verifier
 * refuses an access into a map value at an offset it cannot bound inside the value, and what it
 * knows of d depends on where the compiled code got d from: computed from a comparison in the
 * same inlined body, clang knows it is 0 or 1 and the verifier sees a constant; read back from
 * map memory (ZD in zeek.h, a volatile read of the scratch packet's zdir; anything kept in the
 * scratch), it is any value of its type (0..255 for a byte) and an unmasked index fails to load.
 * So every direction index is written d & 1 (the sender's half) and (d ^ 1) & 1 (the
 * receiver's), whatever the caller: where clang can prove d is 0 or 1 it drops the mask, and
 * where d comes from memory the mask is the bound that lets the program load. Measured: with
 * every [d & 1] outside zeek.h unmasked the programs are the same (same tags); with zeek.h's
 * [ZD & 1] unmasked the verifier refuses them ("max value is outside of the allowed memory
 * range"). The mask never changes a result, d being 0 or 1. */
#ifndef CT_LIB_SEQ_H
#define CT_LIB_SEQ_H

#include "ctrack.h"

/* Sequence-space comparisons modulo 2^32 (RFC 9293 section 3.4). */
static __always_inline int seq_before(__u32 a, __u32 b) { return (__s32)(a - b) < 0; }
static __always_inline int seq_after(__u32 a, __u32 b) { return (__s32)(b - a) < 0; }

#endif /* CT_LIB_SEQ_H */
