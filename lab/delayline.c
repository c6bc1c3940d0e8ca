/*
 * delayline: the lab's stand-in for netem. It binds an NFQUEUE queue, holds every packet the
 * kernel queues to it for a configured time (plus optional jitter), drops a seeded random
 * fraction, and then gives the kernel an ACCEPT verdict, so the packet goes on its way late.
 *
 * Why NFQUEUE and not a TUN hop: the packet never leaves the kernel. Userspace sees only a
 * small metadata message (NFQNL_COPY_META) and answers with a verdict, so the cost per packet
 * is two short netlink messages whatever the packet's size, and with NFQA_CFG_F_GSO the kernel
 * queues GSO super-packets whole instead of segmenting them first. A TUN hop would copy every
 * byte twice and need routes through an extra namespace.
 *
 * Where it sits is the lab's choice (ctrack/labtopo.py): an iptables NFQUEUE rule where packets
 * ARRIVE (a wire host's PREROUTING, the routed topology's router FORWARD), never on a sender's
 * way out: a packet held there still counts against its TCP socket's small-queue budget and TCP
 * throttles itself to a few Mbit/s.
 *
 * Design:
 *   - held packets live in a binary min-heap keyed by (release time, arrival sequence): with no
 *     jitter every packet gets the same delay, so the heap pops them in arrival order;
 *   - the main loop sleeps in ppoll() until the next release time or a new message, with the
 *     timer slack set to 1 ns so a 1 ms delay is not rounded up by the default 50 us slack;
 *   - messages are read with recvmmsg() and verdicts are packed many to one sendto(); when
 *     release order equals arrival order (no jitter, or --keep-order) one VERDICT_BATCH
 *     message accepts every packet up to an id;
 *   - memory is bounded: at most --cap packets are held (the kernel queue gets a little more
 *     room so that it is never the one that drops); a packet arriving when full is dropped and
 *     counted;
 *   - SIGTERM/SIGINT release every held packet at once and exit 0; SIGUSR1 writes the stats.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define RX_BATCH 64           /* messages per recvmmsg() */
#define RX_MSG_SIZE 4096      /* one COPY_META packet message is a few hundred bytes */
#define TX_BUF_SIZE (64 * 1024)
#define KERNEL_QUEUE_SLACK 4096

struct held {
    uint64_t due_ns;  /* when to release */
    uint64_t seq;     /* arrival order: ties in due_ns release first-come first */
    uint32_t id;      /* the kernel's packet id */
};

struct config {
    const char *netns;
    unsigned queue;
    uint64_t delay_ns, jitter_ns;
    double loss;          /* probability 0..1 */
    uint64_t seed;
    unsigned cap;
    bool keep_order;
    const char *stats_path;
    bool verbose;
};

struct stats {
    uint64_t received, accepted, lost, overflow, verdict_errors;
    uint64_t max_held;
    uint64_t late_sum_ns, late_max_ns, late_count;  /* how far past due_ns a release was */
};

static volatile sig_atomic_t stop_requested, stats_requested;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        stats_requested = 1;
    else
        stop_requested = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: small, fast, and reproducible from --seed, which is all loss needs. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double rng_unit(void)  /* uniform in [0, 1) */
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- the heap of held packets ---- */

static struct held *heap;
static unsigned heap_len;

static bool held_before(const struct held *a, const struct held *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void heap_push(struct held h)
{
    unsigned i = heap_len++;
    while (i > 0) {
        unsigned parent = (i - 1) / 2;
        if (!held_before(&h, &heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = h;
}

static struct held heap_pop(void)
{
    struct held top = heap[0], last = heap[--heap_len];
    unsigned i = 0;
    for (;;) {
        unsigned child = 2 * i + 1;
        if (child >= heap_len)
            break;
        if (child + 1 < heap_len && held_before(&heap[child + 1], &heap[child]))
            child++;
        if (!held_before(&heap[child], &last))
            break;
        heap[i] = heap[child];
        i = child;
    }
    if (heap_len > 0)
        heap[i] = last;
    return top;
}

/* ---- netlink ---- */

static struct mnl_socket *nl;
static unsigned portid;
static char txbuf[TX_BUF_SIZE];
static size_t txlen;
static struct config cfg;
static struct stats st;

static void tx_flush(void)
{
    if (txlen == 0)
        return;
    if (mnl_socket_sendto(nl, txbuf, txlen) < 0) {
        /* The kernel keeps the packets; they are released on exit or when the queue closes. */
        st.verdict_errors++;
        if (cfg.verbose)
            fprintf(stderr, "delayline: sendto: %s\n", strerror(errno));
    }
    txlen = 0;
}

static void tx_verdict(int msg_type, uint32_t id, int verdict)
{
    /* A verdict message is a netlink header, nfgenmsg and one attribute: well under 64 bytes. */
    if (txlen + 64 > sizeof(txbuf))
        tx_flush();
    struct nlmsghdr *nlh = nfq_nlmsg_put(txbuf + txlen, msg_type, cfg.queue);
    nfq_nlmsg_verdict_put(nlh, (int)id, verdict);
    txlen += NLMSG_ALIGN(nlh->nlmsg_len);
}

/* Send one configuration message and wait for the kernel's answer, so that a refusal (queue
 * already bound by another process, no NFQUEUE support) is reported instead of ignored. */
static int config_request(struct nlmsghdr *nlh)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = (unsigned)time(NULL);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return -1;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        if (n < 0)
            return -1;
        int rc = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, NULL, NULL);
        if (rc <= MNL_CB_STOP)
            return rc;
    }
}

static int queue_setup(void)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh;

    nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl) {
        perror("delayline: netlink socket");
        return -1;
    }
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        perror("delayline: netlink bind");
        return -1;
    }
    portid = mnl_socket_get_portid(nl);

    /* A deep socket buffer: a burst larger than it is dropped by the kernel (counted in
     * /proc/net/netfilter/nfnetlink_queue as user_dropped). FORCE works for root. */
    int rcvbuf = 32 * 1024 * 1024;
    if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
        setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    int one = 1;
    setsockopt(mnl_socket_get_fd(nl), SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));

    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, cfg.queue);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    if (config_request(nlh) < 0) {
        fprintf(stderr, "delayline: cannot bind queue %u: %s%s\n", cfg.queue, strerror(errno),
                errno == EBUSY ? " (another process holds it)" : "");
        return -1;
    }

    /* Metadata only: the verdict needs the packet id, never the bytes. GSO: take super-packets
     * whole (the kernel would otherwise segment each one before queueing, which is slow and
     * changes what the receiver's GRO sees). */
    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, cfg.queue);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, cfg.cap + KERNEL_QUEUE_SLACK);
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
    if (config_request(nlh) < 0) {
        fprintf(stderr, "delayline: cannot configure queue %u: %s\n", cfg.queue, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- packets in, packets out ---- */

static uint64_t arrival_seq;
static uint64_t last_due_ns;  /* for --keep-order */
static uint32_t max_id_seen;
static bool batch_ok;         /* releases follow arrival order, so VERDICT_BATCH is exact */

static void on_packet(const struct nlmsghdr *nlh, uint64_t now)
{
    struct nlattr *attr[NFQA_MAX + 1] = {0};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
        return;
    const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
    uint32_t id = ntohl(ph->packet_id);
    max_id_seen = id;
    st.received++;

    if (cfg.loss > 0 && rng_unit() < cfg.loss) {
        st.lost++;
        tx_verdict(NFQNL_MSG_VERDICT, id, NF_DROP);
        return;
    }
    if (heap_len >= cfg.cap) {
        st.overflow++;
        tx_verdict(NFQNL_MSG_VERDICT, id, NF_DROP);
        return;
    }
    uint64_t due = now + cfg.delay_ns;
    if (cfg.jitter_ns) {
        /* Uniform in [-jitter, +jitter], never before the packet arrived. */
        double off = (rng_unit() * 2.0 - 1.0) * (double)cfg.jitter_ns;
        due = (off < 0 && (uint64_t)(-off) > due - now) ? now : (uint64_t)((double)due + off);
        if (cfg.keep_order && due < last_due_ns)
            due = last_due_ns;
    }
    last_due_ns = due;
    heap_push((struct held){.due_ns = due, .seq = arrival_seq++, .id = id});
    if (heap_len > st.max_held)
        st.max_held = heap_len;
}

static void release_due(uint64_t now)
{
    uint32_t last_id = 0;
    bool any = false;
    while (heap_len > 0 && heap[0].due_ns <= now) {
        struct held h = heap_pop();
        uint64_t late = now - h.due_ns;
        st.late_sum_ns += late;
        st.late_count++;
        if (late > st.late_max_ns)
            st.late_max_ns = late;
        st.accepted++;
        if (batch_ok) {
            last_id = h.id;
            any = true;
        } else {
            tx_verdict(NFQNL_MSG_VERDICT, h.id, NF_ACCEPT);
        }
    }
    if (any)
        tx_verdict(NFQNL_MSG_VERDICT_BATCH, last_id, NF_ACCEPT);
}

static void on_datagram(const char *buf, size_t len, uint64_t now)
{
    const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
    int remaining = (int)len;
    while (mnl_nlmsg_ok(nlh, remaining)) {
        if (nlh->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
            if (err->error != 0) {
                st.verdict_errors++;
                if (cfg.verbose)
                    fprintf(stderr, "delayline: kernel refused a verdict: %s\n", strerror(-err->error));
            }
        } else if (nlh->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
            on_packet(nlh, now);
        }
        nlh = mnl_nlmsg_next(nlh, &remaining);
    }
}

/* Read everything waiting (up to a bound, so releases are not starved under load). */
static void drain_socket(int fd, int rounds)
{
    static char bufs[RX_BATCH][RX_MSG_SIZE];
    static struct iovec iov[RX_BATCH];
    static struct mmsghdr msgs[RX_BATCH];
    for (int i = 0; i < RX_BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = RX_MSG_SIZE;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (rounds-- > 0) {
        int n = recvmmsg(fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        uint64_t now = now_ns();
        for (int i = 0; i < n; i++)
            on_datagram(bufs[i], msgs[i].msg_len, now);
        if (n < RX_BATCH)
            return;
    }
}

/* The kernel's own counters for this queue, from the namespace we are in. */
static void kernel_counters(uint64_t *queue_dropped, uint64_t *user_dropped)
{
    *queue_dropped = *user_dropped = 0;
    FILE *f = fopen("/proc/net/netfilter/nfnetlink_queue", "r");
    if (!f)
        return;
    unsigned qnum, peer, total, mode, range, qdrop, udrop;
    while (fscanf(f, "%u %u %u %u %u %u %u %*u %*u", &qnum, &peer, &total, &mode, &range, &qdrop,
                  &udrop) == 7) {
        if (qnum == cfg.queue) {
            *queue_dropped = qdrop;
            *user_dropped = udrop;
        }
    }
    fclose(f);
}

static void write_stats(FILE *out, bool final)
{
    uint64_t kq, ku;
    kernel_counters(&kq, &ku);
    fprintf(out,
            "{\"pid\": %d, \"queue\": %u, \"netns\": \"%s\", \"delay_us\": %.3f, \"jitter_us\": %.3f, "
            "\"loss\": %.6f, \"seed\": %" PRIu64 ", \"cap\": %u, \"received\": %" PRIu64
            ", \"accepted\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"overflow\": %" PRIu64
            ", \"held\": %u, \"max_held\": %" PRIu64
            ", \"late_us_mean\": %.3f, \"late_us_max\": %.3f, \"verdict_errors\": %" PRIu64
            ", \"kernel_queue_dropped\": %" PRIu64 ", \"kernel_user_dropped\": %" PRIu64
            ", \"final\": %s}\n",
            (int)getpid(), cfg.queue, cfg.netns ? cfg.netns : "", cfg.delay_ns / 1e3,
            cfg.jitter_ns / 1e3, cfg.loss, cfg.seed, cfg.cap, st.received, st.accepted, st.lost,
            st.overflow, heap_len, st.max_held,
            st.late_count ? (double)st.late_sum_ns / (double)st.late_count / 1e3 : 0.0,
            st.late_max_ns / 1e3, st.verdict_errors, kq, ku, final ? "true" : "false");
}

static void save_stats(bool final)
{
    if (!cfg.stats_path)
        return;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", cfg.stats_path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    write_stats(f, final);
    if (fclose(f) == 0)
        rename(tmp, cfg.stats_path);  /* readers never see half a file */
}

/* ---- command line ---- */

/* "20ms", "1.5ms", "500us", "0.1s", "3" (milliseconds) -> nanoseconds; -1 when malformed. */
static int64_t parse_duration(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -1;
    double mult = 1e6;
    if (*end == '\0' || !strcmp(end, "ms"))
        mult = 1e6;
    else if (!strcmp(end, "us"))
        mult = 1e3;
    else if (!strcmp(end, "ns"))
        mult = 1;
    else if (!strcmp(end, "s"))
        mult = 1e9;
    else
        return -1;
    return (int64_t)(v * mult + 0.5);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: delayline [options]\n"
            "Hold packets queued by an iptables NFQUEUE rule for a fixed time, then accept them.\n\n"
            "  -q, --queue N        NFQUEUE number to bind (default 7)\n"
            "  -d, --delay T        delay per packet: 20ms, 500us, 0.1s (default 0)\n"
            "  -j, --jitter T       +/- uniform jitter (default 0; packets may reorder)\n"
            "  -o, --keep-order     with jitter, never release a packet before an earlier one\n"
            "  -l, --loss PCT       drop this percentage of packets at random (default 0)\n"
            "  -s, --seed N         random seed for loss and jitter (default 1)\n"
            "  -c, --cap N          hold at most N packets; drop (and count) beyond (default 65536)\n"
            "  -n, --netns NAME     enter network namespace /run/netns/NAME first\n"
            "  -S, --stats FILE     keep JSON statistics in FILE (rewritten each second)\n"
            "  -v, --verbose        report verdict errors\n"
            "  -h, --help           this help\n\n"
            "Example, in a namespace with `iptables -t mangle -A PREROUTING -j NFQUEUE --queue-num 7\n"
            "--queue-bypass`:  delayline --queue 7 --delay 20ms --loss 1 --seed 42\n"
            "SIGTERM/SIGINT release every held packet and exit; SIGUSR1 rewrites the stats file.\n");
}

static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"queue", required_argument, 0, 'q'},  {"delay", required_argument, 0, 'd'},
        {"jitter", required_argument, 0, 'j'}, {"keep-order", no_argument, 0, 'o'},
        {"loss", required_argument, 0, 'l'},   {"seed", required_argument, 0, 's'},
        {"cap", required_argument, 0, 'c'},    {"netns", required_argument, 0, 'n'},
        {"stats", required_argument, 0, 'S'},  {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    cfg.queue = 7;
    cfg.seed = 1;
    cfg.cap = 65536;
    int c;
    while ((c = getopt_long(argc, argv, "q:d:j:ol:s:c:n:S:vh", opts, NULL)) != -1) {
        char *end;
        int64_t ns;
        switch (c) {
        case 'q':
            cfg.queue = (unsigned)strtoul(optarg, &end, 10);
            if (*end || cfg.queue > 65535) goto bad;
            break;
        case 'd':
            if ((ns = parse_duration(optarg)) < 0) goto bad;
            cfg.delay_ns = (uint64_t)ns;
            break;
        case 'j':
            if ((ns = parse_duration(optarg)) < 0) goto bad;
            cfg.jitter_ns = (uint64_t)ns;
            break;
        case 'o':
            cfg.keep_order = true;
            break;
        case 'l':
            cfg.loss = strtod(optarg, &end) / 100.0;
            if (*end == '%') end++;
            if (*end || cfg.loss < 0 || cfg.loss > 1) goto bad;
            break;
        case 's':
            cfg.seed = strtoull(optarg, &end, 0);
            if (*end) goto bad;
            break;
        case 'c':
            cfg.cap = (unsigned)strtoul(optarg, &end, 10);
            if (*end || cfg.cap == 0 || cfg.cap > 1000000) goto bad;
            break;
        case 'n':
            cfg.netns = optarg;
            break;
        case 'S':
            cfg.stats_path = optarg;
            break;
        case 'v':
            cfg.verbose = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "delayline: bad value for -%c: %s\n", c, optarg);
        return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "delayline: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    return 0;
}

static int enter_netns(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s", strchr(name, '/') ? "" : "/run/netns/", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        fprintf(stderr, "delayline: cannot enter network namespace %s: %s\n", path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    if (cfg.netns && enter_netns(cfg.netns) < 0)
        return 1;
    rng_state = cfg.seed ? cfg.seed * 0x9E3779B97F4A7C15ull : 0x9E3779B97F4A7C15ull;
    batch_ok = cfg.jitter_ns == 0 || cfg.keep_order;
    heap = calloc(cfg.cap, sizeof(*heap));
    if (!heap) {
        fprintf(stderr, "delayline: out of memory for %u entries\n", cfg.cap);
        return 1;
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    /* Signals stay blocked except inside ppoll(), so a stop request cannot slip in between
     * checking the flag and going to sleep. */
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGUSR1);
    sigdelset(&waitmask, SIGHUP);

    if (queue_setup() < 0)
        return 1;
    fprintf(stderr, "delayline: queue %u%s%s: delay %.3f ms, jitter %.3f ms, loss %.3f%%, seed %" PRIu64
            ", cap %u\n", cfg.queue, cfg.netns ? " in " : "", cfg.netns ? cfg.netns : "",
            cfg.delay_ns / 1e6, cfg.jitter_ns / 1e6, cfg.loss * 100, cfg.seed, cfg.cap);
    save_stats(false);

    int fd = mnl_socket_get_fd(nl);
    uint64_t next_stats = now_ns() + 1000000000ull;
    while (!stop_requested) {
        uint64_t now = now_ns();
        struct timespec ts, *tsp = NULL;
        uint64_t wake = next_stats;
        if (heap_len > 0 && heap[0].due_ns < wake)
            wake = heap[0].due_ns;
        uint64_t wait = wake > now ? wake - now : 0;
        ts.tv_sec = (time_t)(wait / 1000000000ull);
        ts.tv_nsec = (long)(wait % 1000000000ull);
        tsp = &ts;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int rc = ppoll(&pfd, 1, tsp, &waitmask);
        if (rc < 0 && errno != EINTR) {
            perror("delayline: ppoll");
            break;
        }
        if (rc > 0 && (pfd.revents & POLLIN))
            drain_socket(fd, 16);
        now = now_ns();
        release_due(now);
        tx_flush();
        if (stats_requested || now >= next_stats) {
            stats_requested = 0;
            save_stats(false);
            next_stats = now + 1000000000ull;
        }
    }

    /* Stop: read what is already queued to us, then accept everything we hold in one batch
     * (VERDICT_BATCH with the newest id covers every older packet still waiting). */
    drain_socket(fd, 1000);
    if (heap_len > 0) {
        st.accepted += heap_len;
        heap_len = 0;
        tx_verdict(NFQNL_MSG_VERDICT_BATCH, max_id_seen, NF_ACCEPT);
        tx_flush();
    }
    save_stats(true);
    write_stats(stderr, true);
    mnl_socket_close(nl);
    free(heap);
    return 0;
}
