/* The normalized profile as JSON: ToolHive's shape, moat's extensions only
 * where used, every name lower-cased, wildcards written ".example.com".
 * The output loads again to the same policy. */
#include "common/moat.h"
#include "profiles/internal.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <string.h>

static void fmt_ports(char *buf, size_t size, const struct port_set *s)
{
	buf[0] = '\0';
	if (!s->n)
		return;
	if (s->r[0].lo == s->r[0].hi)
		snprintf(buf, size, ":%u", s->r[0].lo);
	else
		snprintf(buf, size, ":%u-%u", s->r[0].lo, s->r[0].hi);
}

static void fmt_addr(char *buf, size_t size, const struct addr_rule *a, bool with_ports)
{
	char ip[INET6_ADDRSTRLEN], pfx[8] = "", ports[16];
	inet_ntop(a->family, a->addr, ip, sizeof(ip));
	if (a->prefix != (a->family == AF_INET ? 32 : 128))
		snprintf(pfx, sizeof(pfx), "/%u", a->prefix);
	fmt_ports(ports, sizeof(ports), &a->ports);
	if (with_ports && a->ports.n && a->family == AF_INET6)
		snprintf(buf, size, "[%s%s]%s", ip, pfx, ports);
	else
		snprintf(buf, size, "%s%s%s", ip, pfx, with_ports ? ports : "");
}

static bool add_strings(cJSON *obj, const char *key, char **v, size_t n)
{
	cJSON *a = cJSON_AddArrayToObject(obj, key);
	for (size_t i = 0; a && i < n; i++)
		if (!cJSON_AddItemToArray(a, cJSON_CreateString(v[i])))
			return false;
	return a != NULL;
}

static bool add_hosts(cJSON *out, const struct policy *p)
{
	cJSON *a = cJSON_AddArrayToObject(out, "allow_host");
	if (!a)
		return false;
	size_t i = 0, j = 0;
	/* hosts and addresses each keep profile order: merge them by index */
	while (i < p->n_hosts || j < p->n_addrs) {
		char buf[POLICY_NAME_MAX + 32];
		if (j >= p->n_addrs || (i < p->n_hosts && p->hosts[i].index < p->addrs[j].index)) {
			const struct host_rule *h = &p->hosts[i++];
			char ports[16];
			fmt_ports(ports, sizeof(ports), &h->ports);
			snprintf(buf, sizeof(buf), "%s%s%s", h->subdomains ? "." : "", h->name, ports);
		} else {
			fmt_addr(buf, sizeof(buf), &p->addrs[j++], true);
		}
		if (!cJSON_AddItemToArray(a, cJSON_CreateString(buf)))
			return false;
	}
	return true;
}

static bool add_ports(cJSON *out, const struct port_set *s)
{
	cJSON *a = cJSON_AddArrayToObject(out, "allow_port");
	for (size_t i = 0; a && i < s->n; i++) {
		cJSON *v;
		if (s->r[i].lo == s->r[i].hi) {
			v = cJSON_CreateNumber(s->r[i].lo);
		} else {
			char buf[16];
			snprintf(buf, sizeof(buf), "%u-%u", s->r[i].lo, s->r[i].hi);
			v = cJSON_CreateString(buf);
		}
		if (!cJSON_AddItemToArray(a, v))
			return false;
	}
	return a != NULL;
}

static bool add_private(cJSON *out, const struct policy *p)
{
	if (!p->private_classes && !p->n_private_ok)
		return true;
	cJSON *a = cJSON_AddArrayToObject(out, "allow_private");
	if (!a)
		return false;
	static const enum addr_class order[] = { ADDR_LOOPBACK, ADDR_LINK_LOCAL, ADDR_PRIVATE,
						 ADDR_CGNAT, ADDR_ULA };
	for (size_t i = 0; i < ARRAY_SIZE(order); i++)
		if ((p->private_classes & (1u << order[i])) &&
		    !cJSON_AddItemToArray(a, cJSON_CreateString(policy_addr_class_name(order[i]))))
			return false;
	for (size_t i = 0; i < p->n_private_ok; i++) {
		char buf[64];
		fmt_addr(buf, sizeof(buf), &p->private_ok[i], false);
		if (!cJSON_AddItemToArray(a, cJSON_CreateString(buf)))
			return false;
	}
	return true;
}

char *policy_to_json(const struct policy *p)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *net = NULL, *out = NULL, *in = NULL, *tr = NULL;
	char *s = NULL;
	if (!root || !cJSON_AddStringToObject(root, "name", p->name ? p->name : "") ||
	    !add_strings(root, "read", p->read, p->n_read) ||
	    !add_strings(root, "write", p->write, p->n_write) ||
	    !cJSON_AddBoolToObject(root, "privileged", p->privileged) ||
	    !(net = cJSON_AddObjectToObject(root, "network")))
		goto out;
	if (p->mode && !cJSON_AddStringToObject(net, "mode", p->mode))
		goto out;
	if (!(out = cJSON_AddObjectToObject(net, "outbound")) ||
	    !cJSON_AddBoolToObject(out, "insecure_allow_all", p->allow_all) ||
	    !(tr = cJSON_AddArrayToObject(out, "allow_transport")) ||
	    (p->tcp && !cJSON_AddItemToArray(tr, cJSON_CreateString("tcp"))) ||
	    (p->udp && !cJSON_AddItemToArray(tr, cJSON_CreateString("udp"))) ||
	    !add_hosts(out, p) || !add_ports(out, &p->ports) || !add_private(out, p) ||
	    !(in = cJSON_AddObjectToObject(net, "inbound")) ||
	    !add_strings(in, "allow_host", p->inbound_hosts, p->n_inbound_hosts))
		goto out;
	s = cJSON_Print(root);
out:
	cJSON_Delete(root);
	return s;
}
