/* moat run --volume SRC:DST[:ro|:rw]: what is accepted, what it means, and the errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/moat.h"
#include "runner/run.h"

#include <string.h>

struct vcase {
	const char *in;
	int ret;                /* 0 or the negative errno */
	const char *src, *dst;
	bool ro;
	const char *msg;        /* part of the error message */
};

static const struct vcase cases[] = {
	{ "/a:/b", 0, "/a", "/b", false, NULL },
	{ "/a:/b:ro", 0, "/a", "/b", true, NULL },
	{ "/a:/b:rw", 0, "/a", "/b", false, NULL },
	{ "/host/dir:/in/container/dir:ro", 0, "/host/dir", "/in/container/dir", true, NULL },
	{ "/a", -EINVAL, NULL, NULL, false, "expected SRC:DST" },
	{ "", -EINVAL, NULL, NULL, false, "expected SRC:DST" },
	{ "a:/b", -EINVAL, NULL, NULL, false, "absolute" },
	{ "/a:b", -EINVAL, NULL, NULL, false, "absolute" },
	{ ":/b", -EINVAL, NULL, NULL, false, "absolute" },
	{ "/a:", -EINVAL, NULL, NULL, false, "absolute" },
	{ "/a:/b:rx", -EINVAL, NULL, NULL, false, "unknown mount option 'rx'" },
	{ "/a:/b:", -EINVAL, NULL, NULL, false, "unknown mount option ''" },
	{ "/a:/b:ro:x", -EINVAL, NULL, NULL, false, "unknown mount option 'ro:x'" },
	{ "/a:/", -EINVAL, NULL, NULL, false, "root" },
	{ "volume://data:/b", -ENOTSUP, NULL, NULL, false, "named volumes" },
};

static void test_volumes(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct vcase *c = &cases[i];
		struct run_volume v;
		struct moat_error e = { 0 };
		int r = run_parse_volume(c->in, &v, &e);
		if (r != c->ret)
			fail_msg("'%s': returned %d, expected %d (%s)", c->in, r, c->ret, e.msg);
		if (r == 0) {
			assert_string_equal(v.src, c->src);
			assert_string_equal(v.dst, c->dst);
			assert_int_equal(v.ro, c->ro);
		} else {
			if (!strstr(e.msg, c->msg) || strncmp(e.msg, "--volume: ", 10) != 0)
				fail_msg("'%s': message '%s' lacks '%s'", c->in, e.msg, c->msg);
		}
	}
}

static void test_too_long(void **state)
{
	static char s[9000];
	struct run_volume v;
	struct moat_error e = { 0 };

	s[0] = '/';
	memset(s + 1, 'a', 5000);
	memcpy(s + 5001, ":/b", 4);
	assert_int_equal(run_parse_volume(s, &v, &e), -ENAMETOOLONG);
	memset(s, '/', sizeof(s) - 1);
	assert_int_equal(run_parse_volume(s, &v, &e), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_volumes),
		cmocka_unit_test(test_too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
