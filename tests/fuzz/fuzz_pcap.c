/* libFuzzer target for the pcap reader, the packet decoder and the flow table:
 * the input as a whole pcap file (flows built, sorted and judged), and as one
 * frame of each link type, an HTTP request and a DNS message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/moat.h"
#include "tools/flows.h"
#include "tools/pcapread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t linktypes[] = {
	PCAP_LINKTYPE_ETHERNET, PCAP_LINKTYPE_RAW, PCAP_LINKTYPE_LINUX_SLL,
	PCAP_LINKTYPE_IPV4, PCAP_LINKTYPE_IPV6,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct flow_table *t = flows_new();
	struct moat_error e = { 0 };
	struct flow **rows;
	size_t n;
	int r;

	if (!t)
		return 0;
	r = flows_add_pcap_buf(t, data, size, "fuzz", &e);
	if (r != 0 && !strstr(e.msg, "fuzz: "))
		abort();
	rows = flows_sorted(t, &n);
	for (size_t i = 0; rows && i < n; i++) {
		if (!flow_verdict(rows[i]) || strlen(rows[i]->name) > PKT_NAME_MAX)
			abort();
		if (i && rows[i - 1]->first_us > rows[i]->first_us)
			abort();
	}
	flows_free(t);

	for (size_t i = 0; i < sizeof(linktypes) / sizeof(linktypes[0]); i++) {
		struct pkt p;
		enum parse_result d = pkt_decode(linktypes[i], data, size, &p);

		if (d == PARSE_OK && p.payload_len &&
		    (p.payload < data || p.payload + p.payload_len > data + size ||
		     p.payload_len > p.payload_wire))
			abort();
		if (d != PARSE_OK && !p.why)
			abort();
	}
	{
		const char *h;
		size_t hl;

		if (http_find_host(data, size, &h, &hl) == PARSE_OK &&
		    ((const uint8_t *)h < data || (const uint8_t *)h + hl > data + size || !hl))
			abort();
	}
	{
		char name[PKT_NAME_MAX + 1];
		uint16_t qt;
		bool resp;

		if (dns_question_name(data, size, name, sizeof(name), &qt, &resp) == PARSE_OK &&
		    strlen(name) > PKT_NAME_MAX)
			abort();
	}
	return 0;
}
