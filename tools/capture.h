/* pcap capture of a sandbox's traffic on the host side of its veth (libpcap).
 *
 * Files are classic pcap (DLT_EN10MB) that tcpdump, tshark and Wireshark open.
 * With rotation the capture is FILE, then FILE.1, FILE.2, ... in time order
 * (FILE is the oldest); with rotate_count the oldest files are deleted so that
 * at most that many remain.  `moat audit --pcap FILE` reads the set in order. */
#ifndef MOAT_CAPTURE_H
#define MOAT_CAPTURE_H

#include <stdint.h>

struct moat_error;

#define CAPTURE_SNAPLEN_DEFAULT 262144
#define CAPTURE_BUFFER_SIZE (8 * 1024 * 1024)

struct capture_opts {
	const char *path;               /* FILE (rotation adds FILE.1, FILE.2, ...) */
	int snaplen;                    /* 0: CAPTURE_SNAPLEN_DEFAULT */
	const char *filter;             /* BPF expression or NULL */
	uint64_t rotate_bytes;          /* 0: no rotation */
	unsigned rotate_count;          /* files kept (0: unlimited) */
};

/* "SIZE[,COUNT]": SIZE in bytes with an optional k, M or G suffix (powers of
 * 1024), at least 4096; COUNT at least 1.  Sets rotate_bytes/rotate_count. */
int capture_parse_rotate(const char *s, struct capture_opts *o, struct moat_error *e);

/* The command-line options of a capture, shared by `moat run` and `moat enforce`:
 *
 *   static const struct option longopts[] = { ..., CAPTURE_LONGOPTS, { 0 } };
 *   r = capture_opt(c, optarg, &pcap, &e);   // 1: was a capture option, 0: not, <0: bad
 *   ...
 *   capture_opts_check(&pcap, &e);           // after the loop
 *
 * The values live in the caller's <getopt.h> option table (required_argument). */
enum {
	CAPTURE_OPT_PCAP = 0x4300,
	CAPTURE_OPT_SNAPLEN,
	CAPTURE_OPT_FILTER,
	CAPTURE_OPT_ROTATE,
};
#define CAPTURE_LONGOPTS \
	{ "pcap", required_argument, NULL, CAPTURE_OPT_PCAP }, \
	{ "pcap-snaplen", required_argument, NULL, CAPTURE_OPT_SNAPLEN }, \
	{ "pcap-filter", required_argument, NULL, CAPTURE_OPT_FILTER }, \
	{ "pcap-rotate", required_argument, NULL, CAPTURE_OPT_ROTATE }
#define CAPTURE_SNAPLEN_MIN 64
/* The lines of a command's --help that describe them. */
#define CAPTURE_USAGE \
	"      --pcap FILE           capture the namespace's traffic to FILE (classic pcap)\n" \
	"      --pcap-snaplen N      bytes kept of each packet (64-262144, default 262144)\n" \
	"      --pcap-filter BPF     capture only what the filter matches (tcpdump syntax)\n" \
	"      --pcap-rotate SIZE[,COUNT]  start FILE.1, FILE.2, ... every SIZE bytes\n" \
	"                            (k, M, G suffixes), keeping at most COUNT files\n"

/* Takes option opt with argument arg into o: 1 when opt is one of
 * CAPTURE_LONGOPTS, 0 when it is not, a negative errno with e naming the
 * option ("--pcap-snaplen: expected 64-262144 (x)") when its value is bad. */
int capture_opt(int opt, const char *arg, struct capture_opts *o, struct moat_error *e);
/* After all options: the other options need --pcap, and the filter must
 * compile (checked here, before anything is set up: "capture filter 'EXPR':
 * <libpcap's reason>"). */
int capture_opts_check(const struct capture_opts *o, struct moat_error *e);

struct capture;

struct capture_stats {
	uint64_t packets, bytes;        /* written to the files (bytes: captured data) */
	unsigned ps_recv, ps_drop, ps_ifdrop;   /* pcap_stats */
	unsigned files;                 /* files written, rotated ones included */
};

/* Opens ifname in the current network namespace (TPACKET_V3 ring, 8 MiB
 * buffer), applies the filter (a bad one is an error naming it), creates the
 * first file and starts the capture thread. */
int capture_start(const char *ifname, const struct capture_opts *o, struct capture **out,
		  struct moat_error *e);

/* Stops the thread, drains what the kernel still holds for the capture socket,
 * closes the file, fills st (may be NULL) and frees c.  NULL c is a no-op. */
void capture_stop(struct capture *c, struct capture_stats *st);

#endif
