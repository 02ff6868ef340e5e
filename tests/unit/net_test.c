/* net_test.c - placeholder until the net tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_net(void)
{
	nb_test_add_suite("net", tests);
}
