/* Optional libraries loaded on first use (dlopen), so that a command which does not need
 * them never maps them: libcurl for --engine, libpcap for --pcap.
 *
 * The user keeps a struct of function pointers typed from the library's own header
 * (`__typeof__(curl_easy_init) *curl_easy_init;`), a table naming each member, and loads
 * once under pthread_once:
 *
 *   static struct dlib lib = DLIB_INIT("libfoo.so.1", "libfoo1", foo_syms, &foo_fns);
 *   static void foo_load(void) { dlib_load(&lib); }
 *   ...
 *   pthread_once(&foo_once, foo_load);
 *   if (dlib_check(&lib, e) < 0)    // "cannot load libfoo.so.1: <reason> (install libfoo1)"
 *           return -e->code;
 */
#ifndef MOAT_DLIB_H
#define MOAT_DLIB_H

#include <stddef.h>

struct moat_error;

struct dlib_sym {
	const char *name;
	size_t offset;                  /* of its function pointer in the table */
};
/* The entry for symbol PREFIX##MEMBER kept in member MEMBER of table type T, e.g.
 * DLIB_SYM(struct curl_fns, curl_, easy_init).  The members are not named like the symbols
 * so that the symbols can be macros calling through the table. */
#define DLIB_SYM(T, prefix, member) { #prefix #member, offsetof(T, member) }

struct dlib {
	const char *soname;             /* "libcurl.so.4": the ABI moat was built against */
	const char *package;            /* the Debian package that ships it, for the hint */
	const struct dlib_sym *syms;
	size_t n_syms;
	void *fns;                      /* the table of function pointers the symbols fill */
	/* set by dlib_load */
	void *handle;                   /* NULL until loaded (and when loading failed) */
	int code;                       /* 0, or the positive errno of the failure */
	char err[384];
};
#define DLIB_INIT(so, pkg, syms_, fns_) \
	{ .soname = (so), .package = (pkg), .syms = (syms_), \
	  .n_syms = sizeof(syms_) / sizeof((syms_)[0]), .fns = (fns_) }

/* Opens l->soname (RTLD_NOW | RTLD_LOCAL) and resolves every symbol into l->fns.  On
 * failure the table is left all NULL, the library is closed and the reason is kept in l
 * (ELIBACC: cannot be opened, ELIBBAD: a symbol is missing).  Not thread-safe: call it
 * once, under pthread_once.  Returns 0 or -l->code. */
int dlib_load(struct dlib *l);

/* 0 when l was loaded; otherwise fills e with "cannot load SONAME: REASON (install
 * PACKAGE)" and returns -l->code.  A library never loaded is -ELIBACC. */
int dlib_check(const struct dlib *l, struct moat_error *e);

#endif
