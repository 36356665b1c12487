/* Flow table: packets grouped by 5-tuple (both directions), names found in the
 * first client bytes, and audit-log events joined by 5-tuple and time. */
#include "tools/flows.h"
#include "common/moat.h"
#include "tproxy/dns_msg.h"
#include "tproxy/tls.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define HASH_BITS 16
#define UDP_IDLE_US (120 * 1000000LL)     /* a UDP/ICMP flow idle this long is over */
#define JOIN_EARLY_US (2 * 1000000LL)     /* an event may precede the flow's first packet */
#define JOIN_LATE_US (120 * 1000000LL)    /* or follow its last packet by this much */

struct flow_table {
	struct flow *hash[1u << HASH_BITS];
	struct flow **all;
	size_t n, cap;
	struct flow **sorted;
	struct flow_stats st;
	uint8_t scratch[TLS_HELLO_MAX];
};

struct flow_table *flows_new(void)
{
	return calloc(1, sizeof(struct flow_table));
}

void flows_free(struct flow_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->all[i]->head);
		free(t->all[i]);
	}
	free(t->all);
	free(t->sorted);
	free(t);
}

const struct flow_stats *flows_stats(const struct flow_table *t)
{
	return &t->st;
}

static size_t alen(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

/* The same hash for both directions. */
static unsigned key_hash(int family, uint8_t proto, const uint8_t *x, uint16_t xp,
			 const uint8_t *y, uint16_t yp)
{
	uint32_t h1 = 2166136261u, h2 = 2166136261u;
	size_t n = alen(family);

	for (size_t i = 0; i < n; i++) {
		h1 = (h1 ^ x[i]) * 16777619u;
		h2 = (h2 ^ y[i]) * 16777619u;
	}
	h1 = (h1 ^ xp) * 16777619u;
	h2 = (h2 ^ yp) * 16777619u;
	return ((h1 + h2) ^ proto ^ (unsigned)family) & ((1u << HASH_BITS) - 1);
}

/* 0: no match, 1: x is a, 2: x is b. */
static int key_match(const struct flow *f, int family, uint8_t proto, const uint8_t *x,
		     uint16_t xp, const uint8_t *y, uint16_t yp)
{
	size_t n = alen(family);

	if (f->family != family || f->proto != proto)
		return 0;
	if (f->aport == xp && f->bport == yp && !memcmp(f->a, x, n) && !memcmp(f->b, y, n))
		return 1;
	if (f->aport == yp && f->bport == xp && !memcmp(f->a, y, n) && !memcmp(f->b, x, n))
		return 2;
	return 0;
}

static struct flow *flow_add(struct flow_table *t, int family, uint8_t proto, const uint8_t *a,
			     uint16_t ap, const uint8_t *b, uint16_t bp, int64_t ts)
{
	struct flow *f;
	unsigned h;

	if (t->n >= FLOWS_MAX)
		return NULL;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct flow **all = realloc(t->all, cap * sizeof(*all));

		if (!all)
			return NULL;
		t->all = all;
		t->cap = cap;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->family = family;
	f->proto = proto;
	memcpy(f->a, a, alen(family));
	memcpy(f->b, b, alen(family));
	f->aport = ap;
	f->bport = bp;
	f->first_us = f->last_us = ts;
	f->l7_up = f->l7_down = f->duration_ms = -1;
	h = key_hash(family, proto, a, ap, b, bp);
	f->hnext = t->hash[h];
	t->hash[h] = f;
	t->all[t->n++] = f;
	return f;
}

/* ---- names from the client's first bytes ---- */

static void set_name(struct flow *f, enum flow_name_kind kind, const char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o < PKT_NAME_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		f->name[o++] = c > 0x20 && c < 0x7f ? (char)c : '?';
	}
	f->name[o] = '\0';
	f->name_kind = kind;
}

static void head_finish(struct flow *f)
{
	free(f->head);
	f->head = NULL;
	f->head_done = true;
}

static void head_parse(struct flow_table *t, struct flow *f)
{
	enum parse_result r;

	if (f->bport == 53) {
		const uint8_t *msg;
		size_t mlen;
		char q[PKT_NAME_MAX + 1];

		r = dns_tcp_frame(f->head, f->head_len, &msg, &mlen);
		if (r == PARSE_OK)
			r = dns_question_name(msg, mlen, q, sizeof(q), NULL, NULL);
		if (r == PARSE_OK)
			set_name(f, FLOW_NAME_QNAME, q, strlen(q));
	} else if (tls_looks_like(f->head, f->head_len) || f->head_len < 3) {
		struct tls_hello h;

		r = tls_parse_client_hello(f->head, f->head_len, t->scratch, sizeof(t->scratch), &h);
		if (r == PARSE_OK && h.has_sni)
			set_name(f, FLOW_NAME_SNI, h.sni, h.sni_len);
		if (f->head_len < 3 && r != PARSE_OK)
			r = PARSE_NEED_MORE;
	} else {
		const char *host;
		size_t hlen;

		r = http_find_host(f->head, f->head_len, &host, &hlen);
		if (r == PARSE_OK)
			set_name(f, FLOW_NAME_HOST, host, hlen);
	}
	if (r != PARSE_NEED_MORE || f->head_len >= FLOW_HEAD_MAX)
		head_finish(f);
}

/* Client payload in sequence order; a gap ends the search (no reassembly). */
static void tcp_client_data(struct flow_table *t, struct flow *f, const struct pkt *p)
{
	size_t n;

	if (f->head_done || p->payload_len == 0)
		return;
	if (p->payload_len < p->payload_wire) {
		head_finish(f);         /* cut by snaplen */
		return;
	}
	if (!f->head_started) {
		f->head_started = true;
		f->next_seq = p->tcp_seq;
	}
	if (p->tcp_seq != f->next_seq) {
		if ((int32_t)(p->tcp_seq - f->next_seq) > 0)
			head_finish(f);  /* a hole: segments were lost or reordered */
		return;                 /* a retransmission */
	}
	if (!f->head && !(f->head = malloc(FLOW_HEAD_MAX))) {
		head_finish(f);
		return;
	}
	n = p->payload_len;
	if (n > FLOW_HEAD_MAX - f->head_len)
		n = FLOW_HEAD_MAX - f->head_len;
	memcpy(f->head + f->head_len, p->payload, n);
	f->head_len += n;
	f->next_seq += (uint32_t)p->payload_len;
	head_parse(t, f);
}

static void udp_client_data(struct flow *f, const struct pkt *p)
{
	char q[PKT_NAME_MAX + 1];
	bool resp = false;

	if (f->name_kind != FLOW_NAME_NONE || f->bport != 53)
		return;
	if (dns_question_name(p->payload, p->payload_len, q, sizeof(q), NULL, &resp) ==
		    PARSE_OK && !resp)
		set_name(f, FLOW_NAME_QNAME, q, strlen(q));
}

/* ---- packets ---- */

static bool is_nd(const struct pkt *p)
{
	/* MLD (130-132, 143), router/neighbour discovery and redirects (133-137) */
	return p->proto == PKT_PROTO_ICMPV6 && p->icmp_type >= 130 && p->icmp_type <= 143;
}

static void add_packet(struct flow_table *t, const struct pcap_rec *rec, const struct pkt *p)
{
	bool ports = (p->proto == PKT_PROTO_TCP || p->proto == PKT_PROTO_UDP) && !p->fragment;
	uint16_t sp = ports ? p->sport : 0, dp = ports ? p->dport : 0;
	int64_t ts = (int64_t)rec->ts_us;
	struct flow *f = NULL;
	int dir = 0;
	unsigned h = key_hash(p->family, p->proto, p->src, sp, p->dst, dp);

	for (struct flow *c = t->hash[h]; c; c = c->hnext) {
		int m = key_match(c, p->family, p->proto, p->src, sp, p->dst, dp);

		if (!m)
			continue;
		f = c;
		dir = m - 1;
		break;
	}
	/* A new connection on a reused 5-tuple. */
	if (f && p->proto == PKT_PROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN &&
	    f->ended)
		f = NULL;
	if (f && p->proto != PKT_PROTO_TCP && ts - f->last_us > UDP_IDLE_US)
		f = NULL;
	if (!f) {
		/* The opener: the sender, unless this is visibly an answer. */
		bool rev = false;

		if (p->proto == PKT_PROTO_TCP)
			rev = (p->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK) ||
			      (!(p->tcp_flags & TCP_SYN) && sp < 1024 && dp >= 1024);
		else if (ports)
			rev = sp < 1024 && dp >= 1024;
		if (rev)
			f = flow_add(t, p->family, p->proto, p->dst, dp, p->src, sp, ts);
		else
			f = flow_add(t, p->family, p->proto, p->src, sp, p->dst, dp, ts);
		if (!f) {
			t->st.untracked++;
			return;
		}
		dir = rev;
	}
	if (ts < f->first_us)
		f->first_us = ts;
	if (ts > f->last_us)
		f->last_us = ts;
	f->pkts[dir]++;
	f->bytes[dir] += rec->len;
	if (p->proto == PKT_PROTO_TCP) {
		if (p->tcp_flags & (TCP_FIN | TCP_RST))
			f->ended = true;
		if (dir == 0)
			tcp_client_data(t, f, p);
	} else if (p->proto == PKT_PROTO_UDP && dir == 0 && ports) {
		udp_client_data(f, p);
	}
}

int flows_add_pcap_buf(struct flow_table *t, const uint8_t *buf, size_t len, const char *label,
		       struct moat_error *e)
{
	struct pcap_file pf;
	struct pcap_rec rec;
	enum parse_result r;

	r = pcap_open_buf(&pf, buf, len);
	if (r != PARSE_OK)
		return moat_error_set(e, EINVAL, "%s: %s", label, pf.err);
	t->st.files++;
	while ((r = pcap_next_rec(&pf, &rec)) == PARSE_OK) {
		struct pkt p;
		enum parse_result d = pkt_decode(pf.linktype, rec.data, rec.caplen, &p);

		t->st.packets++;
		if (d == PARSE_INVALID) {
			if (p.why && !strcmp(p.why, "unsupported link type"))
				return moat_error_set(e, EINVAL, "%s: offset 20: link type %u is not "
						      "supported", label, pf.linktype);
			t->st.malformed++;
			continue;
		}
		if (d == PARSE_NEED_MORE && (!p.family || !p.proto)) {
			t->st.cut++;
			continue;
		}
		if (!p.family) {
			t->st.not_ip++;
			continue;
		}
		if (is_nd(&p)) {
			t->st.nd++;
			continue;
		}
		if (d == PARSE_NEED_MORE) {
			/* ports may be unknown: count under the addresses alone */
			t->st.cut++;
			if (!p.sport && !p.dport)
				p.fragment = true;
			p.payload_len = p.payload_wire = 0;
		}
		add_packet(t, &rec, &p);
	}
	if (r == PARSE_INVALID)
		return moat_error_set(e, EINVAL, "%s: %s", label, pf.err);
	if (!pcap_at_end(&pf)) {
		moat_error_set(e, EINVAL, "%s: %s; the records before it are used", label, pf.err);
		return 1;
	}
	return 0;
}

int flows_add_pcap_file(struct flow_table *t, const char *path, struct moat_error *e)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void *m;
	int r;

	if (fd < 0)
		return moat_error_errno(e, errno, "%s", path);
	if (fstat(fd, &st) < 0)
		return moat_error_errno(e, errno, "%s", path);
	if (!S_ISREG(st.st_mode))
		return moat_error_set(e, EINVAL, "%s: not a regular file", path);
	if (st.st_size == 0)
		return flows_add_pcap_buf(t, (const uint8_t *)"", 0, path, e);
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		return moat_error_errno(e, errno, "%s", path);
	r = flows_add_pcap_buf(t, m, (size_t)st.st_size, path, e);
	munmap(m, (size_t)st.st_size);
	return r;
}

/* ---- rotated sets ---- */

struct numbered {
	unsigned long n;
	char *path;
};

static int cmp_numbered(const void *x, const void *y)
{
	const struct numbered *a = x, *b = y;

	return a->n < b->n ? -1 : a->n > b->n;
}

void flows_free_paths(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

int flows_pcap_set(const char *path, char ***paths, size_t *n, struct moat_error *e)
{
	_cleanup_free_ char *dir = strdup(path);
	_cleanup_free_ struct numbered *nums = NULL;
	size_t nn = 0, cap = 0, out = 0, blen;
	const char *base = strrchr(path, '/');
	struct stat st;
	bool self;
	DIR *d;
	char **res;
	struct dirent *de;

	if (!dir)
		return moat_error_errno(e, ENOMEM, "%s", path);
	if (base) {
		dir[base > path ? (size_t)(base - path) : 1] = '\0';
		base++;
	} else {
		strcpy(dir, ".");
		base = path;
	}
	blen = strlen(base);
	self = stat(path, &st) == 0;
	d = opendir(dir);
	if (!d && !self)
		return moat_error_errno(e, errno, "%s", path);
	while (d && (de = readdir(d))) {
		const char *s = de->d_name;
		unsigned long long v;

		if (strncmp(s, base, blen) || s[blen] != '.' ||
		    moat_parse_uint(s + blen + 1, 1, 1000000000, &v) < 0 || s[blen + 1] == '0')
			continue;
		if (nn == cap) {
			struct numbered *g = realloc(nums, (cap = cap ? cap * 2 : 16) * sizeof(*g));

			if (!g)
				goto oom;
			nums = g;
		}
		if (asprintf(&nums[nn].path, "%s.%s", path, s + blen + 1) < 0)
			goto oom;
		nums[nn++].n = (unsigned long)v;
	}
	if (d)
		closedir(d);
	d = NULL;
	if (!self && nn == 0)
		return moat_error_set(e, ENOENT, "%s: no such file (nor %s.1, ...)", path, path);
	if (nn)
		qsort(nums, nn, sizeof(*nums), cmp_numbered);
	res = calloc(nn + 1, sizeof(*res));
	if (!res)
		goto oom;
	if (self && !(res[out++] = strdup(path))) {
		free(res);
		goto oom;
	}
	for (size_t i = 0; i < nn; i++)
		res[out++] = nums[i].path;
	*paths = res;
	*n = out;
	return 0;
oom:
	if (d)
		closedir(d);
	for (size_t i = 0; i < nn; i++)
		free(nums[i].path);
	return moat_error_errno(e, ENOMEM, "%s", path);
}

/* ---- the audit log ---- */

static bool has_tuple(const struct audit_event *ev)
{
	return ev->has_src && ev->has_dst && ev->proto;
}

/* The flow this event belongs to: the newest one of its key that started before
 * it (give or take JOIN_EARLY_US) and was still alive within JOIN_LATE_US. */
static struct flow *find_flow(struct flow_table *t, const struct audit_event *ev, uint16_t sp,
			      uint16_t dp, bool any_time)
{
	unsigned h = key_hash(ev->family, ev->proto, ev->src, sp, ev->dst, dp);
	struct flow *best = NULL;

	for (struct flow *c = t->hash[h]; c; c = c->hnext) {
		if (!key_match(c, ev->family, ev->proto, ev->src, sp, ev->dst, dp))
			continue;
		if (c->first_us > ev->ts_us + JOIN_EARLY_US)
			continue;
		if (!any_time && ev->ts_us > c->last_us + JOIN_LATE_US)
			continue;
		if (!best || c->first_us > best->first_us)
			best = c;
	}
	return best;
}

static struct flow *dns_flow(struct flow_table *t, const struct audit_event *ev)
{
	struct flow *best = NULL;
	size_t n = alen(ev->family);

	if (!ev->qname)
		return NULL;
	/* DNS events carry no source port: match on addresses, port 53 and the name. */
	for (size_t i = 0; i < t->n; i++) {
		struct flow *c = t->all[i];
		int64_t d, bd;

		if (c->family != ev->family || c->proto != ev->proto || c->bport != 53 ||
		    memcmp(c->a, ev->src, n) || memcmp(c->b, ev->dst, n) ||
		    c->name_kind != FLOW_NAME_QNAME || strcasecmp(c->name, ev->qname))
			continue;
		if (c->first_us > ev->ts_us + JOIN_EARLY_US || ev->ts_us > c->last_us + JOIN_LATE_US)
			continue;
		d = ev->ts_us > c->first_us ? ev->ts_us - c->first_us : c->first_us - ev->ts_us;
		bd = best ? (ev->ts_us > best->first_us ? ev->ts_us - best->first_us
						      : best->first_us - ev->ts_us) : 0;
		/* prefer a flow not judged yet, then the nearest in time */
		if (!best || (!c->decision && best->decision) ||
		    (!c->decision == !best->decision && d < bd))
			best = c;
	}
	return best;
}

static void join_one(struct flow_table *t, const struct audit_event *ev)
{
	bool is_dns = !strcmp(ev->event, "dns"), is_close = !strcmp(ev->event, "close");
	bool is_drop = !strcmp(ev->event, "drop");
	uint16_t sp, dp;
	struct flow *f;

	if (!has_tuple(ev))
		goto unmatched;
	if (is_dns) {
		sp = 0;
		dp = 53;
		f = dns_flow(t, ev);
	} else {
		sp = ev->sport >= 0 && (ev->proto == 6 || ev->proto == 17) ? (uint16_t)ev->sport : 0;
		dp = ev->dport >= 0 && (ev->proto == 6 || ev->proto == 17) ? (uint16_t)ev->dport : 0;
		f = find_flow(t, ev, sp, dp, is_close);
		if (f && is_close && f->closed)
			f = NULL;
	}
	if (!f) {
		f = flow_add(t, ev->family, ev->proto, ev->src, sp, ev->dst, dp, ev->ts_us);
		if (!f)
			goto unmatched;
		t->st.audit_unmatched++;
		if (is_dns && ev->qname)
			set_name(f, FLOW_NAME_QNAME, ev->qname, strlen(ev->qname));
	}
	if (ev->ts_us > f->last_us && !f->pkts[0] && !f->pkts[1])
		f->last_us = ev->ts_us;
	f->n_events++;
	if (f->name_kind == FLOW_NAME_NONE) {
		if (ev->sni)
			set_name(f, FLOW_NAME_SNI, ev->sni, strlen(ev->sni));
		else if (ev->host)
			set_name(f, FLOW_NAME_HOST, ev->host, strlen(ev->host));
	}
	if (is_close) {
		f->closed = true;
		f->l7_up = ev->bytes_up;
		f->l7_down = ev->bytes_down;
		f->duration_ms = ev->duration_ms;
		return;
	}
	if (is_dns)
		f->last_dns = ev;
	if (is_drop) {
		f->dropped = true;
		if (!f->decision)
			f->decision = ev;
		return;
	}
	if (!strcmp(ev->event, "tcp") || !strcmp(ev->event, "http") ||
	    !strcmp(ev->event, "udp") || is_dns) {
		/* the first L7 judgement decides; a later deny (a refused request on a
		 * kept-alive connection) overrides an allow */
		if (!f->decision || !strcmp(f->decision->event, "drop") ||
		    (strcmp(ev->verdict, "deny") == 0 && strcmp(f->decision->verdict, "deny")))
			f->decision = ev;
	}
	return;
unmatched:
	t->st.audit_unmatched++;
}

void flows_join_audit(struct flow_table *t, const struct audit_log *log)
{
	for (size_t i = 0; i < log->n; i++) {
		const struct audit_event *ev = &log->ev[i];

		if (!strcmp(ev->event, "sandbox"))
			continue;
		t->st.audit_events++;
		join_one(t, ev);
	}
}

static int cmp_flow(const void *x, const void *y)
{
	const struct flow *a = *(struct flow *const *)x, *b = *(struct flow *const *)y;

	if (a->first_us != b->first_us)
		return a->first_us < b->first_us ? -1 : 1;
	return 0;
}

struct flow **flows_sorted(struct flow_table *t, size_t *n)
{
	free(t->sorted);
	t->sorted = malloc((t->n ? t->n : 1) * sizeof(*t->sorted));
	if (!t->sorted) {
		*n = 0;
		return NULL;
	}
	if (t->n)
		memcpy(t->sorted, t->all, t->n * sizeof(*t->sorted));
	/* stable enough: flows are added in time order per file */
	qsort(t->sorted, t->n, sizeof(*t->sorted), cmp_flow);
	*n = t->n;
	return t->sorted;
}

const char *flow_verdict(const struct flow *f)
{
	if (f->decision && !strcmp(f->decision->event, "drop"))
		return "dropped (L4)";
	if (f->decision && f->decision->verdict[0])
		return f->decision->verdict;
	if (f->pkts[0] && !f->pkts[1])
		return "no answer";
	if (f->closed && !f->pkts[0])
		return "allow";
	return "-";
}

const char *flow_reason(const struct flow *f)
{
	if (f->decision && f->decision->reason)
		return f->decision->reason;
	return "";
}
