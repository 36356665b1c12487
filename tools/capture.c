/* Capture thread: poll on the pcap socket and a stop eventfd, dispatch in
 * non-blocking mode, and on stop drain what is still queued before the file
 * is closed (libpcap loses the end of a capture otherwise). */
#include "tools/capture.h"
#include "common/dlib.h"
#include "common/moat.h"

#include <fcntl.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>

/* libpcap is opened on first use (load_libpcap), so that only a command with --pcap maps it
 * and what it pulls in.  The pcap_ names below call through this table, whose types come
 * from <pcap/pcap.h>; one missing here fails to link, as moat is not linked with libpcap. */
#define PCAP_FNS(X) \
	X(create) X(activate) X(close) X(set_snaplen) X(set_promisc) X(set_timeout) \
	X(set_buffer_size) X(setnonblock) X(get_selectable_fd) X(datalink) \
	X(datalink_val_to_name) X(open_dead) X(compile) X(setfilter) X(freecode) \
	X(dispatch) X(breakloop) X(stats) X(geterr) X(statustostr) X(dump_fopen) X(dump) \
	X(dump_flush) X(dump_close)
static struct pcap_fns {
#define PCAP_FN(f) __typeof__(pcap_##f) *f;
	PCAP_FNS(PCAP_FN)
#undef PCAP_FN
} pcap_fns;
static const struct dlib_sym pcap_syms[] = {
#define PCAP_SYM(f) DLIB_SYM(struct pcap_fns, pcap_, f),
	PCAP_FNS(PCAP_SYM)
#undef PCAP_SYM
};
static struct dlib pcap_lib = DLIB_INIT("libpcap.so.0.8", "libpcap0.8", pcap_syms, &pcap_fns);
static pthread_once_t pcap_once = PTHREAD_ONCE_INIT;

#define pcap_create pcap_fns.create
#define pcap_activate pcap_fns.activate
#define pcap_close pcap_fns.close
#define pcap_set_snaplen pcap_fns.set_snaplen
#define pcap_set_promisc pcap_fns.set_promisc
#define pcap_set_timeout pcap_fns.set_timeout
#define pcap_set_buffer_size pcap_fns.set_buffer_size
#define pcap_setnonblock pcap_fns.setnonblock
#define pcap_get_selectable_fd pcap_fns.get_selectable_fd
#define pcap_datalink pcap_fns.datalink
#define pcap_datalink_val_to_name pcap_fns.datalink_val_to_name
#define pcap_open_dead pcap_fns.open_dead
#define pcap_compile pcap_fns.compile
#define pcap_setfilter pcap_fns.setfilter
#define pcap_freecode pcap_fns.freecode
#define pcap_dispatch pcap_fns.dispatch
#define pcap_breakloop pcap_fns.breakloop
#define pcap_stats pcap_fns.stats
#define pcap_geterr pcap_fns.geterr
#define pcap_statustostr pcap_fns.statustostr
#define pcap_dump_fopen pcap_fns.dump_fopen
#define pcap_dump pcap_fns.dump
#define pcap_dump_flush pcap_fns.dump_flush
#define pcap_dump_close pcap_fns.dump_close

static void libpcap_load_once(void)
{
	dlib_load(&pcap_lib);
}

/* Before any pcap_ call: "--pcap: cannot load libpcap.so.0.8: <reason> (install ...)". */
static int load_libpcap(struct moat_error *e)
{
	pthread_once(&pcap_once, libpcap_load_once);
	if (dlib_check(&pcap_lib, e) < 0)
		return moat_error_prefix(e, "--pcap");
	return 0;
}

#define DRAIN_ROUNDS_MAX 100000
#define CAPTURE_BLOCK_MS 50
#define DRAIN_WAIT_MS (2 * CAPTURE_BLOCK_MS + 20)

struct capture {
	pcap_t *p;
	pcap_dumper_t *d;
	char *path;
	uint64_t rotate_bytes;
	unsigned rotate_count;
	unsigned index;                 /* of the current file: 0 is FILE, n is FILE.n */
	uint64_t cur_bytes;             /* bytes in the current file */
	int stopfd;
	pthread_t thread;
	bool thread_started;
	struct capture_stats st;
};

int capture_parse_rotate(const char *s, struct capture_opts *o, struct moat_error *e)
{
	unsigned long long size = 0, count = 0, mult = 1;
	const char *p = s;
	char *end;

	if (!s || !*s)
		return moat_error_set(e, EINVAL, "rotation: empty (want SIZE[,COUNT], e.g. 10M,5)");
	errno = 0;
	size = strtoull(p, &end, 10);
	if (end == p || errno)
		return moat_error_set(e, EINVAL, "rotation '%s': SIZE is not a number", s);
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	default: break;
	}
	if (*end && *end != ',')
		return moat_error_set(e, EINVAL,
				      "rotation '%s': want SIZE[,COUNT] with SIZE like 500k, 10M, 1G",
				      s);
	if (size > (1ull << 50) / mult)
		return moat_error_set(e, EINVAL, "rotation '%s': SIZE too large", s);
	size *= mult;
	if (size < 4096)
		return moat_error_set(e, EINVAL, "rotation '%s': SIZE must be at least 4096 bytes",
				      s);
	if (*end == ',') {
		if (moat_parse_uint(end + 1, 1, 1000000, &count) < 0)
			return moat_error_set(e, EINVAL,
					      "rotation '%s': COUNT must be a number from 1 to "
					      "1000000", s);
	}
	o->rotate_bytes = size;
	o->rotate_count = (unsigned)count;
	return 0;
}

int capture_opt(int opt, const char *arg, struct capture_opts *o, struct moat_error *e)
{
	unsigned long long v;

	switch (opt) {
	case CAPTURE_OPT_PCAP:
		if (!arg || !*arg)
			return moat_error_set(e, EINVAL, "--pcap: empty file name");
		o->path = arg;
		return 1;
	case CAPTURE_OPT_FILTER:
		o->filter = arg;
		return 1;
	case CAPTURE_OPT_SNAPLEN:
		if (moat_parse_uint(arg, CAPTURE_SNAPLEN_MIN, CAPTURE_SNAPLEN_DEFAULT, &v) < 0)
			return moat_error_set(e, EINVAL, "--pcap-snaplen: expected %d-%d (%s)",
					      CAPTURE_SNAPLEN_MIN, CAPTURE_SNAPLEN_DEFAULT, arg);
		o->snaplen = (int)v;
		return 1;
	case CAPTURE_OPT_ROTATE:
		if (capture_parse_rotate(arg, o, e) < 0)
			return moat_error_prefix(e, "--pcap-rotate");
		return 1;
	default:
		return 0;
	}
}

int capture_opts_check(const struct capture_opts *o, struct moat_error *e)
{
	struct bpf_program prog;
	pcap_t *dead;
	int r = 0;

	if (!o->path) {
		if (o->filter || o->snaplen || o->rotate_bytes)
			return moat_error_set(e, EINVAL, "--pcap-snaplen, --pcap-filter and "
					      "--pcap-rotate need --pcap FILE");
		return 0;
	}
	if (load_libpcap(e) < 0)
		return -e->code;
	if (!o->filter || !*o->filter)
		return 0;
	/* the same link type and snaplen as the live capture, which compiles it again */
	dead = pcap_open_dead(DLT_EN10MB, o->snaplen ? o->snaplen : CAPTURE_SNAPLEN_DEFAULT);
	if (!dead)
		return moat_error_errno(e, ENOMEM, "capture filter");
	if (pcap_compile(dead, &prog, o->filter, 1, PCAP_NETMASK_UNKNOWN) < 0)
		r = moat_error_set(e, EINVAL, "capture filter '%s': %s", o->filter,
				   pcap_geterr(dead));
	else
		pcap_freecode(&prog);
	pcap_close(dead);
	return r;
}

static char *file_name(const struct capture *c, unsigned index)
{
	char *s;

	if (index == 0)
		return strdup(c->path);
	if (asprintf(&s, "%s.%u", c->path, index) < 0)
		return NULL;
	return s;
}

/* Captures may hold secrets: the files are the owner's alone. */
static pcap_dumper_t *open_dump(struct capture *c, unsigned index, struct moat_error *e)
{
	_cleanup_free_ char *name = file_name(c, index);
	pcap_dumper_t *d;
	FILE *f;
	int fd;

	if (!name) {
		moat_error_errno(e, ENOMEM, "capture");
		return NULL;
	}
	fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		moat_error_errno(e, errno, "capture file %s", name);
		return NULL;
	}
	f = fdopen(fd, "w");
	if (!f) {
		moat_error_errno(e, errno, "capture file %s", name);
		close(fd);
		return NULL;
	}
	d = pcap_dump_fopen(c->p, f);
	if (!d) {
		moat_error_set(e, EIO, "capture file %s: %s", name, pcap_geterr(c->p));
		fclose(f);
		return NULL;
	}
	c->cur_bytes = 24;
	c->st.files++;
	return d;
}

static void rotate(struct capture *c)
{
	struct moat_error e = { 0 };

	pcap_dump_close(c->d);
	c->d = open_dump(c, c->index + 1, &e);
	if (!c->d) {
		log_error("%s; capture stopped", e.msg);
		return;
	}
	c->index++;
	if (c->rotate_count && c->index >= c->rotate_count) {
		_cleanup_free_ char *old = file_name(c, c->index - c->rotate_count);

		if (old && unlink(old) < 0 && errno != ENOENT)
			log_warn("capture: removing %s: %s", old, strerror(errno));
	}
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct capture *c = (struct capture *)user;
	uint64_t need = 16 + (uint64_t)h->caplen;

	if (c->d && c->rotate_bytes && c->cur_bytes > 24 && c->cur_bytes + need > c->rotate_bytes)
		rotate(c);
	if (!c->d)
		return;
	pcap_dump((u_char *)c->d, h, bytes);
	c->cur_bytes += need;
	c->st.packets++;
	c->st.bytes += h->caplen;
}

static void *capture_thread(void *arg)
{
	struct capture *c = arg;
	struct pollfd pf[2] = {
		{ .fd = pcap_get_selectable_fd(c->p), .events = POLLIN },
		{ .fd = c->stopfd, .events = POLLIN },
	};

	for (;;) {
		int n = poll(pf, 2, -1);

		if (n < 0 && errno != EINTR) {
			log_error("capture: poll: %s", strerror(errno));
			break;
		}
		if (n > 0 && pf[1].revents)
			break;
		if (n > 0 && pf[0].revents) {
			n = pcap_dispatch(c->p, -1, on_packet, (u_char *)c);
			if (n == PCAP_ERROR) {
				log_error("capture: %s", pcap_geterr(c->p));
				break;
			}
			if (c->d)
				pcap_dump_flush(c->d);
		}
	}
	/* The drain: whatever the socket still queues belongs to the capture,
	 * including the block the kernel retires within CAPTURE_BLOCK_MS. */
	for (int i = 0; i < DRAIN_ROUNDS_MAX; i++) {
		int n = pcap_dispatch(c->p, -1, on_packet, (u_char *)c);

		if (n == PCAP_ERROR_BREAK)
			continue;       /* the flag pcap_breakloop() set, now cleared */
		if (n < 0)
			break;
		if (n > 0)
			continue;
		if (poll(pf, 1, DRAIN_WAIT_MS) <= 0)
			break;
	}
	return NULL;
}

static void capture_free(struct capture *c)
{
	if (c->d)
		pcap_dump_close(c->d);
	if (c->p)
		pcap_close(c->p);
	if (c->stopfd >= 0)
		close(c->stopfd);
	free(c->path);
	free(c);
}

static int pcap_fail(struct capture *c, int r, const char *ifname, struct moat_error *e)
{
	const char *msg = pcap_geterr(c->p);

	if (!msg || !*msg)
		msg = pcap_statustostr(r);
	return moat_error_set(e, r == PCAP_ERROR_NO_SUCH_DEVICE ? ENODEV :
			      r == PCAP_ERROR_PERM_DENIED ? EPERM : EIO,
			      "capture on %s: %s", ifname, msg);
}

int capture_start(const char *ifname, const struct capture_opts *o, struct capture **out,
		  struct moat_error *e)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	struct bpf_program prog;
	struct capture *c;
	int r;

	if (!o->path || !*o->path)
		return moat_error_set(e, EINVAL, "capture: no file given");
	if (o->snaplen < 0 || o->snaplen > CAPTURE_SNAPLEN_DEFAULT)
		return moat_error_set(e, EINVAL, "capture: snaplen %d out of range 1-%d",
				      o->snaplen, CAPTURE_SNAPLEN_DEFAULT);
	if (load_libpcap(e) < 0)
		return -e->code;
	c = calloc(1, sizeof(*c));
	if (!c)
		return moat_error_errno(e, ENOMEM, "capture");
	c->stopfd = -1;
	c->rotate_bytes = o->rotate_bytes;
	c->rotate_count = o->rotate_count;
	if (!(c->path = strdup(o->path))) {
		r = moat_error_errno(e, ENOMEM, "capture");
		goto fail;
	}
	c->p = pcap_create(ifname, errbuf);
	if (!c->p) {
		r = moat_error_set(e, EIO, "capture on %s: %s", ifname, errbuf);
		goto fail;
	}
	pcap_set_snaplen(c->p, o->snaplen ? o->snaplen : CAPTURE_SNAPLEN_DEFAULT);
	pcap_set_promisc(c->p, 0);
	/* Not immediate mode: libpcap then uses a TPACKET_V2 ring of snaplen-sized
	 * slots (32 of them for 8 MiB at 256 KiB), which drops bursts.  TPACKET_V3
	 * packs packets into blocks retired every CAPTURE_BLOCK_MS; the drain
	 * waits for the last one. */
	pcap_set_timeout(c->p, CAPTURE_BLOCK_MS);
	pcap_set_buffer_size(c->p, CAPTURE_BUFFER_SIZE);
	r = pcap_activate(c->p);
	if (r < 0) {
		r = pcap_fail(c, r, ifname, e);
		goto fail;
	}
	if (r > 0)
		log_warn("capture on %s: %s", ifname, pcap_statustostr(r));
	if (pcap_datalink(c->p) != DLT_EN10MB)
		log_warn("capture on %s: link type %s, not Ethernet", ifname,
			 pcap_datalink_val_to_name(pcap_datalink(c->p)));
	if (o->filter && *o->filter) {
		if (pcap_compile(c->p, &prog, o->filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
			r = moat_error_set(e, EINVAL, "capture filter '%s': %s", o->filter,
					   pcap_geterr(c->p));
			goto fail;
		}
		r = pcap_setfilter(c->p, &prog);
		pcap_freecode(&prog);
		if (r < 0) {
			r = moat_error_set(e, EINVAL, "capture filter '%s': %s", o->filter,
					   pcap_geterr(c->p));
			goto fail;
		}
	}
	if (pcap_setnonblock(c->p, 1, errbuf) < 0) {
		r = moat_error_set(e, EIO, "capture on %s: %s", ifname, errbuf);
		goto fail;
	}
	if (pcap_get_selectable_fd(c->p) < 0) {
		r = moat_error_set(e, EIO, "capture on %s: no selectable descriptor", ifname);
		goto fail;
	}
	c->d = open_dump(c, 0, e);
	if (!c->d) {
		r = -e->code;
		goto fail;
	}
	c->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stopfd < 0) {
		r = moat_error_errno(e, errno, "capture: eventfd");
		goto fail;
	}
	r = pthread_create(&c->thread, NULL, capture_thread, c);
	if (r) {
		r = moat_error_errno(e, r, "capture: thread");
		goto fail;
	}
	c->thread_started = true;
	*out = c;
	return 0;
fail:
	capture_free(c);
	return r < 0 ? r : -EIO;
}

void capture_stop(struct capture *c, struct capture_stats *st)
{
	struct pcap_stat ps;
	uint64_t one = 1;

	if (!c)
		return;
	if (c->thread_started) {
		pcap_breakloop(c->p);
		if (write(c->stopfd, &one, sizeof(one)) < 0)
			log_warn("capture: stop: %s", strerror(errno));
		pthread_join(c->thread, NULL);
	}
	if (pcap_stats(c->p, &ps) == 0) {
		c->st.ps_recv = ps.ps_recv;
		c->st.ps_drop = ps.ps_drop;
		c->st.ps_ifdrop = ps.ps_ifdrop;
	}
	if (st)
		*st = c->st;
	capture_free(c);
}
