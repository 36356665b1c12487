/* Permission profiles: loading (ToolHive's format plus moat's extensions,
 * docs/profiles.md) and the compiled policy that every decision consults. */
#ifndef MOAT_PROFILE_H
#define MOAT_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

struct moat_error;

#define POLICY_NAME_MAX 253

struct port_range {
	uint16_t lo, hi;                /* inclusive, 1..65535 */
};

struct port_set {
	struct port_range *r;           /* sorted, merged */
	size_t n;
};

/* A name rule from allow_host: "api.example.com", ".example.com",
 * "*.example.com", each optionally ":PORT" or ":LO-HI". */
struct host_rule {
	char *name;                     /* normalized: lower case, no trailing dot, no "*." / "." */
	bool subdomains;                /* apex and every subdomain */
	struct port_set ports;          /* empty: the profile's allow_port applies */
	char *source;                   /* the entry as written, for explain and audit */
	int index;                      /* position in allow_host */
};

/* An address rule from allow_host ("198.18.0.10", "198.18.0.0/15",
 * "2001:2::/48", "[2001:2::1]:443") or from allow_private. */
struct addr_rule {
	int family;                     /* AF_INET or AF_INET6 */
	uint8_t addr[16];               /* network address, host bits cleared */
	uint8_t prefix;
	struct port_set ports;          /* empty: allow_port applies */
	char *source;
	int index;
};

/* Destination classes closed by default (security model 6). */
enum addr_class {
	ADDR_PUBLIC = 0,
	ADDR_LOOPBACK,                  /* 127/8, ::1 */
	ADDR_LINK_LOCAL,                /* 169.254/16 (cloud metadata), fe80::/10 */
	ADDR_PRIVATE,                   /* RFC 1918 */
	ADDR_CGNAT,                     /* 100.64/10 */
	ADDR_ULA,                       /* fc00::/7 */
	ADDR_UNSPECIFIED,               /* 0.0.0.0/8, ::, multicast, broadcast, reserved */
};

struct policy {
	char *name;                     /* "name" or the file's base name */
	char *path;                     /* the file it was loaded from (NULL from a buffer) */
	bool allow_all;                 /* network.outbound.insecure_allow_all */
	bool tcp, udp;                  /* allow_transport; default tcp only */
	struct port_set ports;          /* allow_port */
	struct host_rule *hosts;
	size_t n_hosts;
	struct addr_rule *addrs;        /* IP literals and CIDRs in allow_host */
	size_t n_addrs;
	struct addr_rule *private_ok;   /* allow_private: CIDRs opened despite their class */
	size_t n_private_ok;
	unsigned private_classes;       /* allow_private keywords: bit (1 << enum addr_class) */

	/* Carried for ToolHive compatibility; moat's runner maps read/write to mounts. */
	char **inbound_hosts;
	size_t n_inbound_hosts;
	char **read;
	size_t n_read;
	char **write;
	size_t n_write;
	bool privileged;
	char *mode;

	void *index;                    /* the matcher's private lookup structure */
};

enum policy_proto { POLICY_TCP = 6, POLICY_UDP = 17 };

struct policy_decision {
	bool allow;
	const char *reason;             /* short, stable, for the audit log: "allow-host",
					 * "host-not-allowed", "port-not-allowed", ... */
	const char *rule;               /* the entry that decided (source text) or NULL */
};

/* Loads a profile from a file path, or a built-in by name when arg has no '/'
 * and does not end in ".json" (search: $MOAT_PROFILE_PATH, the install dir,
 * the source tree).  Errors read "FILE: field.path[index]: what (value)". */
int policy_load(const char *arg, struct policy **out, struct moat_error *e);
int policy_load_file(const char *path, struct policy **out, struct moat_error *e);
int policy_load_buffer(const char *buf, size_t len, const char *label, struct policy **out,
		       struct moat_error *e);
void policy_free(struct policy *p);

/* Lists built-in profile names (NULL-terminated static array). */
const char *const *policy_builtin_names(void);

/* Whether policy_load() treats arg as a built-in name (no '/', no ".json"). */
bool policy_is_builtin_name(const char *arg);
/* Finds the file of a built-in (or any profile named NAME.json on the search
 * path) and writes its path; -ENOENT when none is found. */
int policy_find_builtin(const char *name, char *path, size_t size);

/* Non-fatal remarks about a valid profile (e.g. a host with no usable port);
 * calls fn once per remark. */
void policy_warnings(const struct policy *p, void (*fn)(void *arg, const char *msg), void *arg);

/* The normalized profile as JSON (caller frees with free()); it loads again
 * to the same policy. */
char *policy_to_json(const struct policy *p);

/* Name + port decision for a connection (L7).  name need not be
 * NUL-terminated; it is compared case-insensitively, trailing dot ignored.
 * A name that is not a valid DNS name (bad characters, numeric forms such as
 * "127.1" or "0x7f.1", a NUL inside len) is denied with reason "bad-name".
 * Reasons: "allow-host", "allow-all"; "host-not-allowed", "port-not-allowed",
 * "transport-not-allowed", "bad-name".  d->rule is the deciding allow_host
 * entry as written (it lives as long as p), or NULL.
 *
 * Neither policy_match_host nor policy_match_addr applies the private-class
 * ban: callers check the address they connect to with
 * policy_private_allowed() as well (insecure_allow_all does not open it). */
void policy_match_host(const struct policy *p, const char *name, size_t len, uint16_t port,
		       enum policy_proto proto, struct policy_decision *d);

/* Address + port decision (IP literals/CIDRs in allow_host).  An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is matched as the IPv4 address.  Reasons:
 * "allow-addr", "allow-all"; "addr-not-allowed", "port-not-allowed",
 * "transport-not-allowed". */
void policy_match_addr(const struct policy *p, int family, const void *addr, uint16_t port,
		       enum policy_proto proto, struct policy_decision *d);

/* Whether DNS may resolve this name: some host rule covers it, whatever the port. */
bool policy_name_resolvable(const struct policy *p, const char *name, size_t len);

/* Class of a destination address (v4-mapped and NAT64 64:ff9b::/96 addresses
 * take their IPv4 address's class), and whether the profile opens it: true for
 * public addresses, else when allow_private names the class or a CIDR holding
 * the address.  policy_addr_class_name gives "public", "loopback",
 * "link-local", "private", "cgnat", "ula", "unspecified". */
enum addr_class policy_addr_class(int family, const void *addr);
bool policy_private_allowed(const struct policy *p, int family, const void *addr);
const char *policy_addr_class_name(enum addr_class c);

/* Every TCP (or UDP) port any rule could allow, merged: what the kernel set holds.
 * Under allow_all this is 1-65535. */
int policy_ports(const struct policy *p, enum policy_proto proto, struct port_set *out);
void port_set_free(struct port_set *s);
bool port_set_has(const struct port_set *s, uint16_t port);

#endif
