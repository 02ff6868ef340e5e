/* optim_test.c - placeholder until the optim tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_optim(void)
{
	nb_test_add_suite("optim", tests);
}
