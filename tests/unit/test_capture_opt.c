/* The capture options shared by moat run and moat enforce: capture_opt() for each option, then
 * capture_opts_check() for the whole set (the filter compiled before anything is set up). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/moat.h"
#include "tools/capture.h"

#include <string.h>

#define END 0

struct arg {
	int opt;
	const char *val;
};

struct ocase {
	const char *desc;
	struct arg args[4];             /* up to END */
	int ret;                        /* 0, or the negative errno of the first failure */
	const char *msg;                /* the whole error message starts with this */
	int snaplen;
	uint64_t rotate_bytes;
	unsigned rotate_count;
};

static const struct ocase cases[] = {
	{ "nothing", { { END } }, 0, NULL, 0, 0, 0 },
	{ "file only", { { CAPTURE_OPT_PCAP, "x.pcap" } }, 0, NULL, 0, 0, 0 },
	{ "all four", { { CAPTURE_OPT_PCAP, "x.pcap" }, { CAPTURE_OPT_SNAPLEN, "96" },
			{ CAPTURE_OPT_FILTER, "tcp port 443" }, { CAPTURE_OPT_ROTATE, "1M,3" } },
	  0, NULL, 96, 1 << 20, 3 },
	{ "snaplen lowest", { { CAPTURE_OPT_PCAP, "x" }, { CAPTURE_OPT_SNAPLEN, "64" } },
	  0, NULL, 64, 0, 0 },
	{ "snaplen highest", { { CAPTURE_OPT_PCAP, "x" }, { CAPTURE_OPT_SNAPLEN, "262144" } },
	  0, NULL, 262144, 0, 0 },
	{ "snaplen too small", { { CAPTURE_OPT_SNAPLEN, "63" } },
	  -EINVAL, "--pcap-snaplen: expected 64-262144 (63)", 0, 0, 0 },
	{ "snaplen too large", { { CAPTURE_OPT_SNAPLEN, "262145" } },
	  -EINVAL, "--pcap-snaplen: expected 64-262144 (262145)", 0, 0, 0 },
	{ "snaplen not a number", { { CAPTURE_OPT_SNAPLEN, "1k" } },
	  -EINVAL, "--pcap-snaplen: expected 64-262144 (1k)", 0, 0, 0 },
	{ "rotate too small", { { CAPTURE_OPT_ROTATE, "1" } },
	  -EINVAL, "--pcap-rotate: rotation '1': SIZE must be at least 4096 bytes", 0, 0, 0 },
	{ "rotate bad count", { { CAPTURE_OPT_ROTATE, "1M,0" } },
	  -EINVAL, "--pcap-rotate: rotation '1M,0': COUNT", 0, 0, 0 },
	{ "empty file name", { { CAPTURE_OPT_PCAP, "" } },
	  -EINVAL, "--pcap: empty file name", 0, 0, 0 },
	{ "filter without file", { { CAPTURE_OPT_FILTER, "tcp" } },
	  -EINVAL, "--pcap-snaplen, --pcap-filter and --pcap-rotate need --pcap FILE", 0, 0, 0 },
	{ "snaplen without file", { { CAPTURE_OPT_SNAPLEN, "100" } },
	  -EINVAL, "--pcap-snaplen, --pcap-filter and --pcap-rotate need --pcap FILE", 100, 0, 0 },
	{ "rotation without file", { { CAPTURE_OPT_ROTATE, "1M" } },
	  -EINVAL, "--pcap-snaplen, --pcap-filter and --pcap-rotate need --pcap FILE", 0,
	  1 << 20, 0 },
	{ "filter syntax error", { { CAPTURE_OPT_PCAP, "x" }, { CAPTURE_OPT_FILTER, "tcp port" } },
	  -EINVAL, "capture filter 'tcp port': ", 0, 0, 0 },
	{ "filter port out of range",
	  { { CAPTURE_OPT_PCAP, "x" }, { CAPTURE_OPT_FILTER, "port 99999" } },
	  -EINVAL, "capture filter 'port 99999': ", 0, 0, 0 },
	{ "filter unknown word", { { CAPTURE_OPT_PCAP, "x" }, { CAPTURE_OPT_FILTER, "moat" } },
	  -EINVAL, "capture filter 'moat': ", 0, 0, 0 },
	{ "empty filter is none", { { CAPTURE_OPT_PCAP, "x" }, { CAPTURE_OPT_FILTER, "" } },
	  0, NULL, 0, 0, 0 },
};

static void test_options(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct ocase *c = &cases[i];
		struct capture_opts o = { 0 };
		struct moat_error e = { 0 };
		int r = 0;

		for (size_t k = 0; k < ARRAY_SIZE(c->args) && c->args[k].opt != END && r >= 0; k++) {
			r = capture_opt(c->args[k].opt, c->args[k].val, &o, &e);
			if (r == 0)
				fail_msg("%s: option %d not taken", c->desc, c->args[k].opt);
		}
		if (r >= 0)
			r = capture_opts_check(&o, &e);
		print_message("%s: %d %s\n", c->desc, r, r < 0 ? e.msg : "");
		if (r != c->ret)
			fail_msg("%s: returned %d, expected %d (%s)", c->desc, r, c->ret, e.msg);
		if (r < 0) {
			if (strncmp(e.msg, c->msg, strlen(c->msg)) != 0)
				fail_msg("%s: message '%s', expected '%s...'", c->desc, e.msg, c->msg);
			continue;
		}
		assert_int_equal(o.snaplen, c->snaplen);
		assert_int_equal(o.rotate_bytes, c->rotate_bytes);
		assert_int_equal(o.rotate_count, c->rotate_count);
	}
}

/* Options that are not the capture's are left to the caller, untouched. */
static void test_not_ours(void **state)
{
	static const int others[] = { 'p', 'a', 'h', 256, 257, CAPTURE_OPT_PCAP - 1,
				      CAPTURE_OPT_ROTATE + 1 };
	for (size_t i = 0; i < ARRAY_SIZE(others); i++) {
		struct capture_opts o = { 0 };
		struct moat_error e = { 0 };
		assert_int_equal(capture_opt(others[i], "x", &o, &e), 0);
		assert_null(o.path);
		assert_null(o.filter);
		assert_int_equal(e.code, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_not_ours),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
