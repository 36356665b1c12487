/* pause: the static pause program of moat run --engine docker (runner/pause/moat-pause.c),
 * also built here for the test image:  cc -static -O2 -o pause tests/helpers/pause.c */
#include "../../runner/pause/moat-pause.c"
