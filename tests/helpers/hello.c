/* hello: a TLS client that shapes its ClientHello, for the proxy's tests.
 *
 *   hello [--sni NAME | --no-sni] [--split MS] [--split-at N] [--pad BYTES]
 *         [--ext TYPE:LEN]... [--ech] [--cafile FILE] [--host NAME] [--path P]
 *         [--timeout S] ADDR PORT
 *
 * Connects to ADDR PORT (IPv4 or IPv6 literal) with TCP_NODELAY and runs an
 * OpenSSL handshake through memory BIOs, so the ClientHello can be written
 * the way a test wants:
 *   --split MS      the ClientHello goes out in two write()s MS ms apart (two
 *                   TCP segments); --split-at N cuts after N bytes (default:
 *                   the middle of the hello)
 *   --pad BYTES     adds an extension (type 0xfa01, unassigned) of BYTES zero
 *                   bytes, so the hello grows by BYTES + 4; above ~16 KiB the
 *                   hello spans two TLS records
 *   --ext TYPE:LEN  adds an extension of that type (decimal or 0x hex) with
 *                   LEN zero bytes
 *   --ech           adds encrypted_client_hello (0xfe0d) with a plausible
 *                   outer-hello body
 *   --no-sni        sends no server_name
 * If the handshake completes it sends "GET PATH HTTP/1.1" with Host (default
 * the SNI) and Connection: close, and prints the response.
 *
 * Output: "hello bytes=N" (the ClientHello's size on the wire), then one of
 *   "handshake ok" + the response     exit 0
 *   "alert N" (N the alert description, 49 = access_denied)       exit 3
 *   "closed" / "reset" (the peer ended the connection, no alert)  exit 4
 *   "timeout"                                                      exit 5
 *   "error: ..."                                                   exit 1 (2: usage)
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define EXT_PAD 0xfa01
#define EXT_ECH 0xfe0d
#define MAX_EXTS 8

struct ext {
	unsigned type;
	size_t len;
	unsigned char *data;
};

static struct ext exts[MAX_EXTS];
static size_t n_exts;
static int alert_seen = -1;
static int timeout_ms = 10000;

static void usage(void)
{
	fprintf(stderr, "usage: hello [--sni NAME | --no-sni] [--split MS] [--split-at N] "
			"[--pad BYTES] [--ext TYPE:LEN] [--ech] [--cafile FILE] [--host NAME] "
			"[--path P] [--timeout S] ADDR PORT\n");
	exit(2);
}

static int add_ext(unsigned type, size_t len, const unsigned char *data)
{
	if (n_exts >= MAX_EXTS || type > 0xffff || len > 65535)
		return -1;
	exts[n_exts].type = type;
	exts[n_exts].len = len;
	exts[n_exts].data = calloc(1, len ? len : 1);
	if (!exts[n_exts].data)
		return -1;
	if (data)
		memcpy(exts[n_exts].data, data, len);
	n_exts++;
	return 0;
}

static int ext_add_cb(SSL *s, unsigned int ext_type, unsigned int context,
		      const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
		      int *al, void *add_arg)
{
	const struct ext *e = add_arg;
	(void)s; (void)ext_type; (void)x; (void)chainidx; (void)al;
	if (!(context & SSL_EXT_CLIENT_HELLO))
		return 0;
	*out = e->data;
	*outlen = e->len;
	return 1;
}

static void info_cb(const SSL *s, int where, int ret)
{
	(void)s;
	if ((where & SSL_CB_READ_ALERT) && alert_seen < 0)
		alert_seen = ret & 0xff;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int write_all(int fd, const unsigned char *b, size_t n)
{
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

struct io {
	int fd;
	BIO *rbio, *wbio;
	bool first;             /* the next flush carries the ClientHello */
	long split_ms;          /* < 0: no split */
	long split_at;          /* <= 0: the middle */
	long deadline;
	size_t hello_len;
	bool peer_eof, peer_reset;
};

/* Writes what OpenSSL produced to the socket. */
static int flush_out(struct io *io)
{
	unsigned char buf[65536];
	for (;;) {
		int n = BIO_read(io->wbio, buf, sizeof(buf));
		if (n <= 0)
			return 0;
		size_t len = (size_t)n;
		if (io->first) {
			io->first = false;
			io->hello_len = len;
			printf("hello bytes=%zu\n", len);
			fflush(stdout);
			if (io->split_ms >= 0 && len > 1) {
				size_t at = io->split_at > 0 ? (size_t)io->split_at : len / 2;
				if (at >= len)
					at = len - 1;
				if (write_all(io->fd, buf, at) < 0)
					return -1;
				sleep_ms(io->split_ms);
				if (write_all(io->fd, buf + at, len - at) < 0)
					return -1;
				continue;
			}
		}
		if (write_all(io->fd, buf, len) < 0)
			return -1;
	}
}

/* Waits for bytes from the peer and hands them to OpenSSL.  1 read, 0 EOF,
 * -1 error, -2 timeout. */
static int fill_in(struct io *io)
{
	unsigned char buf[65536];
	long left = io->deadline - now_ms();
	if (left <= 0)
		return -2;
	struct pollfd p = { .fd = io->fd, .events = POLLIN };
	int r = poll(&p, 1, (int)left);
	if (r < 0)
		return errno == EINTR ? 1 : -1;
	if (r == 0)
		return -2;
	ssize_t n = recv(io->fd, buf, sizeof(buf), 0);
	if (n < 0) {
		if (errno == ECONNRESET)
			io->peer_reset = true;
		io->peer_eof = true;
		BIO_set_mem_eof_return(io->rbio, 0);
		return 0;
	}
	if (n == 0) {
		io->peer_eof = true;
		BIO_set_mem_eof_return(io->rbio, 0);
		return 0;
	}
	BIO_write(io->rbio, buf, (int)n);
	return 1;
}

/* Drives one SSL call to completion.  Returns its result (> 0 success). */
static int drive(struct io *io, SSL *ssl, int (*op)(SSL *, void *, int), void *arg, int len)
{
	for (;;) {
		int r = op(ssl, arg, len);
		if (flush_out(io) < 0)
			return -1;
		if (r > 0)
			return r;
		int err = SSL_get_error(ssl, r);
		if (err == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
			return -1;
		if (err == SSL_ERROR_WANT_READ) {
			if (io->peer_eof)
				return -1;
			int f = fill_in(io);
			if (f == -2)
				return -2;
			if (f < 0)
				return -1;
		}
	}
}

static int op_handshake(SSL *s, void *a, int l)
{
	(void)a; (void)l;
	return SSL_connect(s);
}

static int op_write(SSL *s, void *a, int l)
{
	return SSL_write(s, a, l);
}

static int op_read(SSL *s, void *a, int l)
{
	return SSL_read(s, a, l);
}

static int parse_uint(const char *s, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 0);
	if (errno || end == s || *end || v < 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int connect_to(const char *addr, const char *port)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	int rc = getaddrinfo(addr, port, &hints, &res);
	if (rc) {
		printf("error: %s %s: %s\n", addr, port, gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		printf("error: connect %s %s: %s\n", addr, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* An ECH extension as a client sends it (draft-ietf-tls-esni, ECHClientHello):
 * type outer(0), cipher suite, config id, a 32-byte enc, a 128-byte payload. */
static int add_ech(void)
{
	unsigned char b[1 + 4 + 1 + 2 + 32 + 2 + 128];
	size_t i = 0;
	memset(b, 0, sizeof(b));
	b[i++] = 0;                     /* ECHClientHelloType outer */
	b[i++] = 0x00; b[i++] = 0x01;   /* KDF HKDF-SHA256 */
	b[i++] = 0x00; b[i++] = 0x01;   /* AEAD AES-128-GCM */
	b[i++] = 0x42;                  /* config_id */
	b[i++] = 0; b[i++] = 32;        /* enc */
	for (size_t k = 0; k < 32; k++)
		b[i++] = (unsigned char)(k * 7 + 1);
	b[i++] = 0; b[i++] = 128;       /* payload */
	for (size_t k = 0; k < 128; k++)
		b[i++] = (unsigned char)(k * 13 + 5);
	return add_ext(EXT_ECH, i, b);
}

int main(int argc, char **argv)
{
	const char *sni = NULL, *cafile = NULL, *host = NULL, *path = "/";
	bool no_sni = false;
	long split_ms = -1, split_at = 0, v;
	int i;
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
		const char *o = argv[i];
		const char *a = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(o, "--no-sni")) {
			no_sni = true;
			continue;
		}
		if (!strcmp(o, "--ech")) {
			if (add_ech() < 0)
				usage();
			continue;
		}
		if (!a)
			usage();
		i++;
		if (!strcmp(o, "--sni")) {
			sni = a;
		} else if (!strcmp(o, "--cafile")) {
			cafile = a;
		} else if (!strcmp(o, "--host")) {
			host = a;
		} else if (!strcmp(o, "--path")) {
			path = a;
		} else if (!strcmp(o, "--split")) {
			if (parse_uint(a, 600000, &split_ms) < 0)
				usage();
		} else if (!strcmp(o, "--split-at")) {
			if (parse_uint(a, 1 << 20, &split_at) < 0)
				usage();
		} else if (!strcmp(o, "--pad")) {
			if (parse_uint(a, 65535, &v) < 0 || add_ext(EXT_PAD, (size_t)v, NULL) < 0)
				usage();
		} else if (!strcmp(o, "--ext")) {
			char *colon = strchr(a, ':');
			long t, l;
			if (!colon)
				usage();
			*colon = '\0';
			if (parse_uint(a, 0xffff, &t) < 0 || parse_uint(colon + 1, 65535, &l) < 0 ||
			    add_ext((unsigned)t, (size_t)l, NULL) < 0)
				usage();
		} else if (!strcmp(o, "--timeout")) {
			if (parse_uint(a, 3600, &v) < 0 || v == 0)
				usage();
			timeout_ms = (int)(v * 1000);
		} else {
			usage();
		}
	}
	if (argc - i != 2 || (no_sni && sni) || (!no_sni && !sni))
		usage();
	if (!host)
		host = sni ? sni : argv[i];

	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		printf("error: SSL_CTX_new\n");
		return 1;
	}
	SSL_CTX_set_info_callback(ctx, info_cb);
	static const unsigned char alpn[] = "\x08http/1.1";
	SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
	for (size_t k = 0; k < n_exts; k++) {
		unsigned ctxflags = SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_2_SERVER_HELLO |
				    SSL_EXT_TLS1_3_ENCRYPTED_EXTENSIONS;
		if (!SSL_CTX_add_custom_ext(ctx, exts[k].type, ctxflags, ext_add_cb, NULL,
					    &exts[k], NULL, NULL)) {
			printf("error: cannot add extension 0x%04x\n", exts[k].type);
			return 1;
		}
	}
	if (cafile) {
		if (!SSL_CTX_load_verify_locations(ctx, cafile, NULL)) {
			printf("error: cannot load %s\n", cafile);
			return 1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}

	int fd = connect_to(argv[i], argv[i + 1]);
	if (fd < 0)
		return 1;
	SSL *ssl = SSL_new(ctx);
	struct io io = { .fd = fd, .first = true, .split_ms = split_ms, .split_at = split_at,
			 .deadline = now_ms() + timeout_ms };
	io.rbio = BIO_new(BIO_s_mem());
	io.wbio = BIO_new(BIO_s_mem());
	if (!ssl || !io.rbio || !io.wbio) {
		printf("error: out of memory\n");
		return 1;
	}
	BIO_set_mem_eof_return(io.rbio, -1);
	SSL_set_bio(ssl, io.rbio, io.wbio);
	if (sni && !SSL_set_tlsext_host_name(ssl, sni)) {
		printf("error: bad SNI\n");
		return 1;
	}
	if (sni && cafile)
		SSL_set1_host(ssl, sni);

	int r = drive(&io, ssl, op_handshake, NULL, 0);
	if (r <= 0) {
		if (alert_seen >= 0) {
			printf("alert %d\n", alert_seen);
			return 3;
		}
		if (r == -2) {
			printf("timeout\n");
			return 5;
		}
		if (io.peer_eof) {
			printf("%s\n", io.peer_reset ? "reset" : "closed");
			return 4;
		}
		unsigned long e = ERR_get_error();
		printf("error: handshake: %s\n", e ? ERR_error_string(e, NULL) : "failed");
		return 1;
	}
	printf("handshake ok\n");
	char req[1024];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
			 path, host);
	if (n <= 0 || (size_t)n >= sizeof(req) || drive(&io, ssl, op_write, req, n) <= 0) {
		printf("error: write request\n");
		return 1;
	}
	char buf[16384];
	for (;;) {
		r = drive(&io, ssl, op_read, buf, sizeof(buf));
		if (r <= 0)
			break;
		fwrite(buf, 1, (size_t)r, stdout);
	}
	if (r == -2) {
		printf("\ntimeout\n");
		return 5;
	}
	fflush(stdout);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}
