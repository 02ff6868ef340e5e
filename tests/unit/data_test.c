/* data_test.c - placeholder until the data tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_data(void)
{
	nb_test_add_suite("data", tests);
}
