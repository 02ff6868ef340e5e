/* arch_test.c - placeholder until the arch tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_arch(void)
{
	nb_test_add_suite("arch", tests);
}
