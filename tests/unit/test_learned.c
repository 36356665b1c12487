/* The learned-address store: what was relayed for a name, until it expires. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tproxy/learned.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct lcase {
	const char *desc;
	const char *add_name, *add_addr;
	const char *ask_name, *ask_addr;
	bool want;
};

static const struct lcase lcases[] = {
	{ "same name, same address", "api.example.com", "198.18.0.10",
	  "api.example.com", "198.18.0.10", true },
	{ "case-insensitive", "API.Example.COM", "198.18.0.10", "api.EXAMPLE.com", "198.18.0.10",
	  true },
	{ "trailing dot on add", "api.example.com.", "198.18.0.10", "api.example.com",
	  "198.18.0.10", true },
	{ "trailing dot on lookup", "api.example.com", "198.18.0.10", "api.example.com.",
	  "198.18.0.10", true },
	{ "other address", "api.example.com", "198.18.0.10", "api.example.com", "198.18.0.11",
	  false },
	{ "other name", "api.example.com", "198.18.0.10", "www.example.com", "198.18.0.10", false },
	{ "parent name is not the same", "api.example.com", "198.18.0.10", "example.com",
	  "198.18.0.10", false },
	{ "IPv6", "api.example.com", "2001:2::10", "api.example.com", "2001:2::10", true },
	{ "IPv6 other address", "api.example.com", "2001:2::10", "api.example.com", "2001:2::11",
	  false },
	{ "v4 address asked as v4-mapped v6 is another family", "api.example.com", "198.18.0.10",
	  "api.example.com", "::ffff:198.18.0.10", false },
	{ "empty name is never stored", "", "198.18.0.10", "", "198.18.0.10", false },
	{ "a lone dot is never stored", ".", "198.18.0.10", ".", "198.18.0.10", false },
};

static int fam_of(const char *a, void *out)
{
	if (inet_pton(AF_INET, a, out) == 1)
		return AF_INET;
	assert_int_equal(inet_pton(AF_INET6, a, out), 1);
	return AF_INET6;
}

static void test_add_has_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(lcases); i++) {
		const struct lcase *c = &lcases[i];
		uint8_t a1[16], a2[16];
		struct learned *l = learned_new(30, 3600);
		assert_non_null(l);
		print_message("%s\n", c->desc);
		int f1 = fam_of(c->add_addr, a1), f2 = fam_of(c->ask_addr, a2);
		learned_add(l, c->add_name, strlen(c->add_name), f1, a1, 300);
		assert_int_equal(learned_has(l, c->ask_name, strlen(c->ask_name), f2, a2), c->want);
		learned_free(l);
	}
}

/* The name need not be NUL-terminated. */
static void test_length_not_nul(void **state)
{
	struct learned *l = learned_new(30, 3600);
	uint8_t a[4] = { 198, 18, 0, 1 };
	learned_add(l, "a.example.comXYZ", 13, AF_INET, a, 60);
	assert_true(learned_has(l, "a.example.com", 13, AF_INET, a));
	assert_false(learned_has(l, "a.example.comXYZ", 16, AF_INET, a));
	learned_free(l);
}

struct hook_seen {
	int calls;
	char name[256];
	uint32_t ttl;
};

static void hook(void *arg, const char *name, int family, const void *addr, uint32_t ttl)
{
	struct hook_seen *h = arg;
	h->calls++;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->ttl = ttl;
}

/* TTLs are clamped to [floor, cap], and the hook sees the TTL kept. */
static void test_ttl_clamp_and_hook(void **state)
{
	static const struct { uint32_t in, kept; } ttls[] = {
		{ 0, 5 }, { 4, 5 }, { 5, 5 }, { 100, 100 }, { 600, 600 }, { 601, 600 },
		{ 86400, 600 },
	};
	struct learned *l = learned_new(5, 600);
	struct hook_seen h = { 0 };
	uint8_t a[4] = { 198, 18, 0, 1 };
	learned_set_hook(l, hook, &h);
	for (size_t i = 0; i < ARRAY_SIZE(ttls); i++) {
		learned_add(l, "Hook.Example.", 13, AF_INET, a, ttls[i].in);
		assert_int_equal(h.calls, (int)i + 1);
		assert_int_equal(h.ttl, ttls[i].kept);
		assert_string_equal(h.name, "hook.example");
	}
	learned_free(l);
}

static void test_expiry(void **state)
{
	struct learned *l = learned_new(0, 3600);
	uint8_t a[4] = { 198, 18, 0, 1 }, b[4] = { 198, 18, 0, 2 }, c[4] = { 198, 18, 0, 3 };
	learned_add(l, "x.example", 9, AF_INET, a, 0);          /* kept 0 s: already gone */
	learned_add(l, "x.example", 9, AF_INET, b, 1);
	learned_add(l, "x.example", 9, AF_INET, c, 60);
	assert_false(learned_has(l, "x.example", 9, AF_INET, a));
	assert_true(learned_has(l, "x.example", 9, AF_INET, b));
	assert_true(learned_has(l, "x.example", 9, AF_INET, c));
	usleep(1100 * 1000);
	assert_false(learned_has(l, "x.example", 9, AF_INET, b));
	assert_true(learned_has(l, "x.example", 9, AF_INET, c));
	/* a fresh answer brings an expired address back */
	learned_add(l, "x.example", 9, AF_INET, b, 60);
	assert_true(learned_has(l, "x.example", 9, AF_INET, b));
	learned_free(l);
}

/* Bounded memory: per name the addresses expiring first go, and across names
 * the least recently answered name goes. */
static void test_caps(void **state)
{
	struct learned *l = learned_new(1, 100000);
	uint8_t a[4] = { 198, 18, 1, 0 };
	/* 40 addresses for one name: TTL grows with the index */
	for (int i = 0; i < 40; i++) {
		a[3] = (uint8_t)i;
		learned_add(l, "many.example", 12, AF_INET, a, 100 + (uint32_t)i);
	}
	int kept = 0;
	for (int i = 0; i < 40; i++) {
		a[3] = (uint8_t)i;
		kept += learned_has(l, "many.example", 12, AF_INET, a);
	}
	assert_true(kept >= 8 && kept < 40);
	a[3] = 39;
	assert_true(learned_has(l, "many.example", 12, AF_INET, a));
	a[3] = 0;
	assert_false(learned_has(l, "many.example", 12, AF_INET, a));

	/* many names: the first ones are evicted, the last ones stay */
	char name[64];
	uint8_t b[4] = { 198, 18, 2, 1 };
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(name, sizeof(name), "n%d.example", i);
		learned_add(l, name, (size_t)n, AF_INET, b, 300);
	}
	int n = snprintf(name, sizeof(name), "n%d.example", 0);
	assert_false(learned_has(l, name, (size_t)n, AF_INET, b));
	n = snprintf(name, sizeof(name), "n%d.example", 19999);
	assert_true(learned_has(l, name, (size_t)n, AF_INET, b));
	learned_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_has_table),
		cmocka_unit_test(test_length_not_nul),
		cmocka_unit_test(test_ttl_clamp_and_hook),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
