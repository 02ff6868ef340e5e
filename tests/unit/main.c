/*
 * main.c - runs every unit-test suite. Each source file tests/unit/X_test.c
 * exports nb_test_X(), which registers its table of tests.
 *
 * Usage: unit-tests [SUITE-SUBSTRING]   (runs the matching suites only)
 */
#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "testutil.h"

void nb_test_rng(void);
void nb_test_conv(void);
void nb_test_layers(void);
void nb_test_loss(void);
void nb_test_optim(void);
void nb_test_data(void);
void nb_test_net(void);
void nb_test_train(void);
void nb_test_plugin(void);
void nb_test_arch(void);
void nb_test_checkpoint(void);
void nb_test_suite(void);
void nb_test_report(void);
void nb_test_store(void);
void nb_test_resume(void);
void nb_test_tinyimagenet(void);
void nb_test_featloss(void);
void nb_test_inversion(void);
void nb_test_image(void);
void nb_test_attack(void);
void nb_test_dafl(void);
void nb_test_bag(void);
void nb_test_dist(void);

int main(int argc, char **argv)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	nb_test_rng();
	nb_test_conv();
	nb_test_layers();
	nb_test_loss();
	nb_test_optim();
	nb_test_data();
	nb_test_net();
	nb_test_train();
	nb_test_plugin();
	nb_test_arch();
	nb_test_checkpoint();
	nb_test_suite();
	nb_test_report();
	nb_test_store();
	nb_test_resume();
	nb_test_tinyimagenet();
	nb_test_featloss();
	nb_test_inversion();
	nb_test_image();
	nb_test_attack();
	nb_test_dafl();
	nb_test_bag();
	nb_test_dist();
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (argc > 1) {
		CU_pSuite s = CU_get_registry()->pSuite;
		for (; s; s = s->pNext)
			if (!strstr(s->pName, argv[1]))
				CU_set_suite_active(s, CU_FALSE);
	}
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures();
	unsigned tests_failed = CU_get_number_of_tests_failed();
	unsigned run = CU_get_number_of_tests_run();
	CU_cleanup_registry();
	printf("%u passed, %u failed\n", run - tests_failed, tests_failed);
	return failed ? 1 : 0;
}
