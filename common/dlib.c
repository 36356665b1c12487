/* dlopen of an optional library into a table of typed function pointers. */
#include "common/dlib.h"
#include "common/moat.h"

#include <dlfcn.h>
#include <string.h>

/* dlsym hands out a void *; POSIX makes it convertible to a function pointer. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
	       "function pointers must be the size of data pointers for dlsym");

/* dlerror() repeats the soname ("libfoo.so.1: cannot open shared object file: ..."). */
static const char *reason(const char *msg, const char *soname)
{
	size_t n = strlen(soname);

	if (!msg || !*msg)
		return "unknown error";
	if (!strncmp(msg, soname, n) && msg[n] == ':' && msg[n + 1] == ' ')
		return msg + n + 2;
	return msg;
}

int dlib_load(struct dlib *l)
{
	size_t i;

	l->code = 0;
	l->err[0] = '\0';
	dlerror();
	l->handle = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
	if (!l->handle) {
		snprintf(l->err, sizeof(l->err), "%s", reason(dlerror(), l->soname));
		l->code = ELIBACC;
		return -l->code;
	}
	for (i = 0; i < l->n_syms; i++) {
		void *sym;

		dlerror();
		sym = dlsym(l->handle, l->syms[i].name);
		if (!sym) {
			snprintf(l->err, sizeof(l->err), "undefined symbol %s", l->syms[i].name);
			l->code = ELIBBAD;
			break;
		}
		memcpy((char *)l->fns + l->syms[i].offset, &sym, sizeof(sym));
	}
	if (l->code) {
		for (i = 0; i < l->n_syms; i++)
			memset((char *)l->fns + l->syms[i].offset, 0, sizeof(void *));
		dlclose(l->handle);
		l->handle = NULL;
		return -l->code;
	}
	return 0;
}

int dlib_check(const struct dlib *l, struct moat_error *e)
{
	if (l->handle)
		return 0;
	return moat_error_set(e, l->code ? l->code : ELIBACC, "cannot load %s: %s (install %s)",
			      l->soname, l->err[0] ? l->err : "not loaded", l->package);
}
