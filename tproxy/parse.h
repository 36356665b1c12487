/* The tri-state result every moat parser returns: the input is complete and
 * valid, a valid prefix that needs more bytes, or malformed. */
#ifndef MOAT_PARSE_H
#define MOAT_PARSE_H

enum parse_result { PARSE_OK = 0, PARSE_NEED_MORE = 1, PARSE_INVALID = -1 };

#endif
