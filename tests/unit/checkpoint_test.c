/* checkpoint_test.c - placeholder until the checkpoint tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_checkpoint(void)
{
	nb_test_add_suite("checkpoint", tests);
}
