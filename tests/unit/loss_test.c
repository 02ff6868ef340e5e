/* loss_test.c - placeholder until the loss tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_loss(void)
{
	nb_test_add_suite("loss", tests);
}
