/* dnsfuzzsend: throws DNS-shaped and random bytes at a resolver address and
 * reports what came back, one line per message.
 *
 *   dnsfuzzsend [-t] [-n RANDOM] [-s SEED] [-w MS] ADDR PORT [FILE...]
 *
 * Each FILE is sent as one message: over UDP as it is, over TCP (-t) with a
 * 2-byte length prefix unless its name starts with "tcp-" (already framed).
 * Then RANDOM messages of random bytes (length 0-600; every other one with a
 * plausible query header: opcode QUERY, QDCOUNT 1), over TCP each with its
 * real length prefix, except every fourth with a random one.  Every message
 * uses a fresh socket and waits up to MS milliseconds (default 150) for an
 * answer.  Lines:
 *
 *   <label> <udp|tcp> len=<n> -> reply rcode=<NAME> qr=<0|1> id=<match|other> ancount=<n>
 *   <label> <udp|tcp> len=<n> -> none        (nothing within MS; TCP: still open)
 *   <label> <udp|tcp> len=<n> -> closed      (TCP: the server closed or reset)
 *
 * and at the end "summary proto=P sent=N reply=N none=N closed=N" followed by
 * "rcode NAME N" per rcode seen.  Exit status 0 unless the helper itself
 * failed (2: bad arguments, 1: socket errors). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG_MAX 65537
#define RANDOM_MAX_LEN 600

static struct sockaddr_storage dst;
static socklen_t dst_len;
static int use_tcp;
static int wait_ms = 150;
static unsigned long n_sent, n_reply, n_none, n_closed, rcodes[16];

static const char *rcode_name(unsigned r)
{
	static const char *names[16] = {
		"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
		"YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13",
		"RCODE14", "RCODE15",
	};
	return names[r & 15];
}

static uint32_t rng_state = 1;
static uint32_t rnd(void)
{
	/* xorshift32: reproducible from the seed */
	uint32_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	rng_state = x;
	return x;
}

/* Waits for fd to be readable; 1 ready, 0 timeout, -1 error. */
static int wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r;
}

static void report(const char *label, size_t len, const uint8_t *msg, const uint8_t *ans,
		   ssize_t alen)
{
	const char *proto = use_tcp ? "tcp" : "udp";
	n_sent++;
	if (alen == 0) {
		n_none++;
		printf("%s %s len=%zu -> none\n", label, proto, len);
		return;
	}
	if (alen < 0) {
		n_closed++;
		printf("%s %s len=%zu -> closed\n", label, proto, len);
		return;
	}
	n_reply++;
	if (alen < 12) {
		printf("%s %s len=%zu -> reply short=%zd\n", label, proto, len, alen);
		return;
	}
	unsigned rc = ans[3] & 15;
	rcodes[rc]++;
	int idmatch = len >= 2 && ans[0] == msg[0] && ans[1] == msg[1];
	printf("%s %s len=%zu -> reply rcode=%s qr=%d id=%s ancount=%u\n", label, proto, len,
	       rcode_name(rc), ans[2] >> 7, idmatch ? "match" : "other",
	       (unsigned)(ans[6] << 8 | ans[7]));
}

/* Sends one message (for TCP: wire already framed) and reads one answer.
 * Returns the answer's length, 0 for none, -1 when a TCP peer closed. */
static ssize_t exchange(const uint8_t *wire, size_t wlen, uint8_t *ans, size_t asize)
{
	int fd = socket(dst.ss_family, (use_tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	ssize_t n = 0;
	if (fd < 0) {
		perror("socket");
		exit(1);
	}
	if (connect(fd, (struct sockaddr *)&dst, dst_len) < 0) {
		if (use_tcp) {
			close(fd);
			return -1;
		}
		perror("connect");
		exit(1);
	}
	if (!use_tcp) {
		if (send(fd, wire, wlen, 0) < 0 && errno != ECONNREFUSED) {
			perror("send");
			exit(1);
		}
		if (wait_readable(fd, wait_ms) == 1) {
			n = recv(fd, ans, asize, 0);
			if (n < 0)
				n = 0;  /* ICMP error: nothing answered */
		}
		close(fd);
		return n;
	}
	size_t off = 0;
	while (off < wlen) {
		ssize_t w = send(fd, wire + off, wlen - off, MSG_NOSIGNAL);
		if (w < 0) {
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	/* one framed answer: 2-byte length, then that many bytes */
	size_t got = 0, need = 2;
	uint8_t hdr[2];
	while (got < need) {
		if (wait_readable(fd, wait_ms) != 1) {
			close(fd);
			return got ? -1 : 0;
		}
		uint8_t *p = need == 2 && got < 2 ? hdr + got : ans + (got - 2);
		size_t room = need == 2 && got < 2 ? 2 - got : need - got;
		ssize_t r = recv(fd, p, room, 0);
		if (r <= 0) {
			close(fd);
			return -1;
		}
		got += (size_t)r;
		if (got == 2 && need == 2) {
			need = 2 + (size_t)(hdr[0] << 8 | hdr[1]);
			if (need - 2 > asize) {
				close(fd);
				return -1;
			}
		}
	}
	close(fd);
	return (ssize_t)(need - 2);
}

static void send_one(const char *label, const uint8_t *msg, size_t len, int framed)
{
	static uint8_t wire[MSG_MAX + 2], ans[MSG_MAX];
	size_t wlen = len;
	const uint8_t *body = msg;
	if (len > MSG_MAX)
		len = wlen = MSG_MAX;
	if (use_tcp && !framed) {
		wire[0] = (uint8_t)(len >> 8);
		wire[1] = (uint8_t)len;
		memcpy(wire + 2, msg, len);
		wlen = len + 2;
	} else {
		memcpy(wire, msg, len);
		if (use_tcp && len >= 2)
			body = msg + 2;      /* framed: the id follows the length */
	}
	ssize_t n = exchange(wire, wlen, ans, sizeof(ans));
	report(label, use_tcp && framed && len >= 2 ? len - 2 : len, body, ans, n);
}

static int parse_addr(const char *a, const char *port)
{
	char *end;
	unsigned long p = strtoul(port, &end, 10);
	if (*end || p == 0 || p > 65535)
		return -1;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&dst;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&dst;
	memset(&dst, 0, sizeof(dst));
	if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		dst_len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		dst_len = sizeof(*s6);
		return 0;
	}
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: dnsfuzzsend [-t] [-n RANDOM] [-s SEED] [-w MS] ADDR PORT [FILE...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long n_random = 0;
	int c;
	rng_state = 0x6d6f6174;
	while ((c = getopt(argc, argv, "tn:s:w:")) != -1) {
		switch (c) {
		case 't': use_tcp = 1; break;
		case 'n': n_random = strtoul(optarg, NULL, 10); break;
		case 's': rng_state = (uint32_t)strtoul(optarg, NULL, 0) | 1; break;
		case 'w': wait_ms = atoi(optarg); break;
		default: usage();
		}
	}
	if (argc - optind < 2 || wait_ms <= 0 || parse_addr(argv[optind], argv[optind + 1]) < 0)
		usage();
	static uint8_t buf[MSG_MAX];
	for (int i = optind + 2; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		size_t len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		const char *base = strrchr(argv[i], '/');
		base = base ? base + 1 : argv[i];
		send_one(base, buf, len, strncmp(base, "tcp-", 4) == 0);
	}
	for (unsigned long i = 0; i < n_random; i++) {
		char label[32];
		size_t len = rnd() % (RANDOM_MAX_LEN + 1);
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rnd();
		if (i % 2 && len >= 12) {
			buf[2] = 0x01;  /* QR=0, opcode QUERY, RD */
			buf[3] = 0x00;
			buf[4] = 0x00;
			buf[5] = 0x01;  /* one question */
		}
		int framed = 0;
		if (use_tcp && i % 4 == 3 && len >= 2)
			framed = 1;     /* the first two random bytes are the length */
		snprintf(label, sizeof(label), "random-%lu", i);
		send_one(label, buf, len, framed);
	}
	printf("summary proto=%s sent=%lu reply=%lu none=%lu closed=%lu\n", use_tcp ? "tcp" : "udp",
	       n_sent, n_reply, n_none, n_closed);
	for (unsigned r = 0; r < 16; r++)
		if (rcodes[r])
			printf("rcode %s %lu\n", rcode_name(r), rcodes[r]);
	return 0;
}
