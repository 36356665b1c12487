/* libFuzzer target: the profile loader, then the matcher and the JSON writer
 * on whatever loaded. */
#include "common/moat.h"
#include "profiles/profile.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ignore(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	if (policy_load_buffer((const char *)data, size, "fuzz.json", &p, &e) < 0)
		return 0;
	static const char *const names[] = {
		"github.com", "api.github.com", "a.b.c.example.com", "EXAMPLE.COM.", "127.1",
		"xn--bcher-kva.example", "evil.com", "com", "", ".",
	};
	struct policy_decision d;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		policy_match_host(p, names[i], strlen(names[i]), 443, POLICY_TCP, &d);
		policy_match_host(p, names[i], strlen(names[i]), 53, POLICY_UDP, &d);
		policy_name_resolvable(p, names[i], strlen(names[i]));
	}
	/* the input's own tail as a name: explicit length, any bytes */
	size_t tail = size > 64 ? 64 : size;
	policy_match_host(p, (const char *)data + size - tail, tail, 8443, POLICY_TCP, &d);
	static const uint8_t v4[4] = { 198, 18, 0, 1 }, lo[4] = { 127, 0, 0, 1 };
	static const uint8_t v6[16] = { 0x20, 0x01, 0, 2, [15] = 1 };
	policy_match_addr(p, AF_INET, v4, 80, POLICY_TCP, &d);
	policy_match_addr(p, AF_INET6, v6, 443, POLICY_UDP, &d);
	policy_private_allowed(p, AF_INET, lo);
	policy_private_allowed(p, AF_INET6, v6);
	struct port_set s;
	if (policy_ports(p, POLICY_TCP, &s) == 0)
		port_set_free(&s);
	policy_warnings(p, ignore, NULL);
	char *json = policy_to_json(p);
	if (json) {
		/* what we print must load again */
		struct policy *q = NULL;
		if (policy_load_buffer(json, strlen(json), "again.json", &q, &e) < 0)
			__builtin_trap();
		policy_free(q);
		free(json);
	}
	policy_free(p);
	return 0;
}
