/* echo: UDP and TCP echo server for the test topology.
 *
 *   echo [--udp PORT] [--tcp PORT] [--bind ADDR] [--ready FILE]
 *
 * Binds ADDR (default "::", dual-stack, so IPv4 arrives as mapped addresses),
 * echoes every UDP datagram to its sender and every TCP byte back on its
 * connection.  --ready FILE is created once all sockets listen, so a harness
 * can wait for it instead of sleeping.  Runs until SIGTERM/SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define MAX_EVENTS 64

/* A TCP connection with bytes read but not yet written back. */
struct conn {
	int fd;
	size_t off, len;
	char buf[BUF_SIZE];
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
		return -1;
	return (int)v;
}

static int bind_socket(const char *addr, int port, int type)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, zero = 0;
	int fd;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
			return -EINVAL;
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
			return -EINVAL;
		sl = sizeof(*s4);
	}
	fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (type == SOCK_DGRAM) {
		/* IPv4 datagrams on a dual-stack socket report IP_PKTINFO */
		setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
		if (ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 128) < 0)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* Replies come from the address the datagram was sent to (a host of U has many
 * addresses on one socket bound to ::), so connected UDP clients accept them. */
static void udp_echo(int fd)
{
	static char buf[BUF_SIZE];

	for (;;) {
		struct sockaddr_storage peer;
		union {
			char b[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
			       CMSG_SPACE(sizeof(struct in_pktinfo))];
			struct cmsghdr align;
		} cin, cout;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr m = {
			.msg_name = &peer, .msg_namelen = sizeof(peer),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cin.b, .msg_controllen = sizeof(cin.b),
		};
		ssize_t n = recvmsg(fd, &m, 0);

		if (n < 0)
			return;
		memset(cout.b, 0, sizeof(cout.b));
		size_t clen = 0;

		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			struct cmsghdr *o = (struct cmsghdr *)cout.b;

			if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
			    c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
				struct in_pktinfo in, out = { 0 };

				memcpy(&in, CMSG_DATA(c), sizeof(in));
				out.ipi_spec_dst = in.ipi_addr;
				o->cmsg_level = IPPROTO_IP;
				o->cmsg_type = IP_PKTINFO;
				o->cmsg_len = CMSG_LEN(sizeof(out));
				memcpy(CMSG_DATA(o), &out, sizeof(out));
				clen = CMSG_SPACE(sizeof(out));
				break;
			}
			if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
			    c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
				struct in6_pktinfo in, out = { 0 };

				memcpy(&in, CMSG_DATA(c), sizeof(in));
				out.ipi6_addr = in.ipi6_addr;
				o->cmsg_level = IPPROTO_IPV6;
				o->cmsg_type = IPV6_PKTINFO;
				o->cmsg_len = CMSG_LEN(sizeof(out));
				memcpy(CMSG_DATA(o), &out, sizeof(out));
				clen = CMSG_SPACE(sizeof(out));
				break;
			}
		}
		iov.iov_len = (size_t)n;
		struct msghdr r = {
			.msg_name = &peer, .msg_namelen = m.msg_namelen,
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = clen ? cout.b : NULL, .msg_controllen = clen,
		};
		sendmsg(fd, &r, 0);
	}
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Reads and writes back until the socket would block; returns -1 when done. */
static int conn_pump(int ep, struct conn *c)
{
	for (;;) {
		while (c->off < c->len) {
			ssize_t w = write(c->fd, c->buf + c->off, c->len - c->off);

			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };

					return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -1 : 0;
				}
				return -1;
			}
			c->off += (size_t)w;
		}
		c->off = c->len = 0;
		ssize_t r = read(c->fd, c->buf, sizeof(c->buf));

		if (r == 0)
			return -1;
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

				return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -1 : 0;
			}
			return -1;
		}
		c->len = (size_t)r;
	}
}

static void tcp_accept(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		struct conn *c = calloc(1, sizeof(*c));

		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: echo [--udp PORT] [--tcp PORT] [--bind ADDR] [--ready FILE]\n");
}

int main(int argc, char **argv)
{
	const char *bind_addr = "::", *ready = NULL;
	int udp_port = 0, tcp_port = 0;
	int ufd = -1, tfd = -1, ep;
	/* distinct tags for the two listening sockets in epoll data */
	static int udp_tag, tcp_tag;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc) {
			usage();
			return 2;
		}
		if (strcmp(argv[i], "--udp") == 0) {
			udp_port = parse_port(argv[++i]);
		} else if (strcmp(argv[i], "--tcp") == 0) {
			tcp_port = parse_port(argv[++i]);
		} else if (strcmp(argv[i], "--bind") == 0) {
			bind_addr = argv[++i];
		} else if (strcmp(argv[i], "--ready") == 0) {
			ready = argv[++i];
		} else {
			usage();
			return 2;
		}
		if (udp_port < 0 || tcp_port < 0) {
			fprintf(stderr, "echo: bad port '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!udp_port && !tcp_port) {
		usage();
		return 2;
	}

	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("echo: epoll_create1");
		return 1;
	}
	if (udp_port) {
		ufd = bind_socket(bind_addr, udp_port, SOCK_DGRAM);
		if (ufd < 0) {
			fprintf(stderr, "echo: udp %s port %d: %s\n", bind_addr, udp_port,
				strerror(-ufd));
			return 1;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &udp_tag };

		epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &ev);
	}
	if (tcp_port) {
		tfd = bind_socket(bind_addr, tcp_port, SOCK_STREAM);
		if (tfd < 0) {
			fprintf(stderr, "echo: tcp %s port %d: %s\n", bind_addr, tcp_port,
				strerror(-tfd));
			return 1;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tcp_tag };

		epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	}
	if (ready) {
		int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd < 0) {
			perror("echo: ready file");
			return 1;
		}
		dprintf(fd, "%d\n", (int)getpid());
		close(fd);
	}

	while (!stop) {
		struct epoll_event evs[MAX_EVENTS];
		int n = epoll_wait(ep, evs, MAX_EVENTS, 1000);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("echo: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &udp_tag)
				udp_echo(ufd);
			else if (p == &tcp_tag)
				tcp_accept(ep, tfd);
			else if (conn_pump(ep, p) < 0)
				conn_close(ep, p);
		}
	}
	return 0;
}
