/* tlsclient: a minimal client for tests inside containers and sandboxes.
 *
 *   tlsclient [--insecure] [--cafile F] [--timeout S] HOST PORT [SNI]
 *   tlsclient --http [--timeout S] HOST PORT [HOSTHEADER]
 *
 * Connects to HOST (an address or a name) on PORT, does a TLS handshake sending SNI (default
 * HOST; "-" sends none), sends "GET / HTTP/1.1" with Host, prints the first line of the
 * response and exits 0; on any failure prints the reason to stderr and exits 1.  Certificates
 * are verified against --cafile (or the system store) unless --insecure.  Built static so it
 * runs in a bare busybox image:  cc -static -O2 tlsclient.c -lssl -lcrypto -lpthread
 */
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: tlsclient [--insecure] [--cafile F] [--timeout S] HOST PORT [SNI]\n"
			"       tlsclient --http [--timeout S] HOST PORT [HOSTHEADER]\n");
	return 2;
}

static int dial(const char *host, const char *port, int timeout)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	struct timeval tv = { .tv_sec = timeout };
	int fd = -1, r = getaddrinfo(host, port, &hints, &res);

	if (r != 0) {
		fprintf(stderr, "tlsclient: %s: %s\n", host, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		fprintf(stderr, "tlsclient: connect %s port %s: %s\n", host, port, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* Prints the first line of what rd() returns. */
static int first_line(int (*rd)(void *, char *, int), void *ctx)
{
	char buf[4096];
	int len = 0;

	while (len < (int)sizeof(buf) - 1) {
		int n = rd(ctx, buf + len, (int)sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += n;
		buf[len] = '\0';
		if (strchr(buf, '\n'))
			break;
	}
	buf[len] = '\0';
	char *nl = strpbrk(buf, "\r\n");
	if (!nl) {
		fprintf(stderr, "tlsclient: no response line\n");
		return 1;
	}
	*nl = '\0';
	printf("%s\n", buf);
	return strncmp(buf, "HTTP/", 5) == 0 ? 0 : 1;
}

static int fd_read(void *ctx, char *b, int n)
{
	return (int)read(*(int *)ctx, b, (size_t)n);
}

static int ssl_read(void *ctx, char *b, int n)
{
	return SSL_read(ctx, b, n);
}

int main(int argc, char **argv)
{
	bool insecure = false, http = false;
	const char *cafile = NULL;
	int timeout = 10, i = 1;
	char req[1024];

	for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
		if (!strcmp(argv[i], "--insecure"))
			insecure = true;
		else if (!strcmp(argv[i], "--http"))
			http = true;
		else if (!strcmp(argv[i], "--cafile") && i + 1 < argc)
			cafile = argv[++i];
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = atoi(argv[++i]);
		else
			return usage();
	}
	if (argc - i < 2 || argc - i > 3 || timeout <= 0)
		return usage();
	const char *host = argv[i], *port = argv[i + 1];
	const char *name = argc - i == 3 ? argv[i + 2] : host;
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlsclient\r\n"
		 "Connection: close\r\n\r\n", strcmp(name, "-") ? name : host);

	int fd = dial(host, port, timeout);
	if (fd < 0)
		return 1;
	if (http) {
		if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
			fprintf(stderr, "tlsclient: write: %s\n", strerror(errno));
			return 1;
		}
		return first_line(fd_read, &fd);
	}

	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return 1;
	if (!insecure) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if ((cafile && !SSL_CTX_load_verify_locations(ctx, cafile, NULL)) ||
		    (!cafile && !SSL_CTX_set_default_verify_paths(ctx))) {
			fprintf(stderr, "tlsclient: cannot load CA certificates\n");
			return 1;
		}
	}
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (strcmp(name, "-")) {
		SSL_set_tlsext_host_name(ssl, name);
		if (!insecure)
			SSL_set1_host(ssl, name);
	}
	if (SSL_connect(ssl) != 1) {
		unsigned long err = ERR_get_error();
		fprintf(stderr, "tlsclient: handshake with %s port %s failed: %s\n", host, port,
			err ? ERR_error_string(err, NULL) : "connection closed");
		return 1;
	}
	if (SSL_write(ssl, req, (int)strlen(req)) <= 0) {
		fprintf(stderr, "tlsclient: write failed\n");
		return 1;
	}
	int r = first_line(ssl_read, ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return r;
}
