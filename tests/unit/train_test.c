/* train_test.c - placeholder until the train tests land. */
#include "testutil.h"

static const nb_test_entry tests[] = {{NULL, NULL}};

void nb_test_train(void)
{
	nb_test_add_suite("train", tests);
}
