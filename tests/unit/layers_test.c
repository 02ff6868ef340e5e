/* layers_test.c - placeholder until the layers tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_layers(void)
{
	nb_test_add_suite("layers", tests);
}
