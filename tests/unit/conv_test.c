/* conv_test.c - placeholder until the conv tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_conv(void)
{
	nb_test_add_suite("conv", tests);
}
