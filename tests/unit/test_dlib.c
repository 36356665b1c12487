/* Loading an optional library into a table of typed function pointers: a table of
 * libraries and symbol lists, and what loading each must give (libc stands in for libcurl
 * and libpcap, which it shares the mechanism with). */
#include "common/dlib.h"
#include "common/moat.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

struct libc_fns {
	__typeof__(strlen) *strlen;
	__typeof__(getpid) *getpid;
	__typeof__(strlen) *no_such;    /* a symbol libc does not have */
};

static const struct dlib_sym good_syms[] = {
	DLIB_SYM(struct libc_fns, , strlen),
	DLIB_SYM(struct libc_fns, , getpid),
};
static const struct dlib_sym bad_syms[] = {
	DLIB_SYM(struct libc_fns, , strlen),
	{ "moat_no_such_symbol", offsetof(struct libc_fns, no_such) },
	DLIB_SYM(struct libc_fns, , getpid),
};

struct dlib_case {
	const char *name;
	const char *soname;
	bool bad_syms;
	int want;
	const char *msg;        /* of dlib_check, when it fails */
};

static const struct dlib_case cases[] = {
	{ "all symbols found", "libc.so.6", false, 0, NULL },
	{ "no such library", "libmoat-none.so.9", false, -ELIBACC,
	  "cannot load libmoat-none.so.9: cannot open shared object file: No such file or "
	  "directory (install moat-test)" },
	{ "a path that is not a library", "/etc/hostname", false, -ELIBACC, NULL },
	{ "a symbol missing", "libc.so.6", true, -ELIBBAD,
	  "cannot load libc.so.6: undefined symbol moat_no_such_symbol (install moat-test)" },
};

static void test_load_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct dlib_case *c = &cases[i];
		struct libc_fns fns = { 0 };
		struct dlib l = c->bad_syms ? (struct dlib)DLIB_INIT(c->soname, "moat-test",
								     bad_syms, &fns)
					    : (struct dlib)DLIB_INIT(c->soname, "moat-test",
								     good_syms, &fns);
		struct moat_error e = { 0 };

		print_message("%s\n", c->name);
		assert_int_equal(dlib_load(&l), c->want);
		assert_int_equal(dlib_check(&l, &e), c->want);
		if (c->want == 0) {
			assert_non_null(l.handle);
			assert_int_equal(fns.strlen("moat"), 4);
			assert_int_equal(fns.getpid(), getpid());
			assert_int_equal(e.code, 0);
			continue;
		}
		/* a failed load leaves nothing half-filled to call */
		assert_null(l.handle);
		assert_null(fns.strlen);
		assert_null(fns.getpid);
		assert_null(fns.no_such);
		assert_int_equal(e.code, -c->want);
		assert_non_null(strstr(e.msg, c->soname));
		assert_non_null(strstr(e.msg, "(install moat-test)"));
		if (c->msg)
			assert_string_equal(e.msg, c->msg);
	}
}

static void test_never_loaded(void **state)
{
	struct libc_fns fns = { 0 };
	struct dlib l = DLIB_INIT("libc.so.6", "libc6", good_syms, &fns);
	struct moat_error e = { 0 };

	assert_int_equal(dlib_check(&l, &e), -ELIBACC);
	assert_string_equal(e.msg, "cannot load libc.so.6: not loaded (install libc6)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_table),
		cmocka_unit_test(test_never_loaded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
