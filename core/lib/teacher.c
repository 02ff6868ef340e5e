/*
 * teacher.c - the attacked teacher as the core hands it to an attack: its
 * released outputs always, the network itself only with white-box,
 * feature or BatchNorm-statistics access. Queries run the frozen network
 * in evaluation mode and apply the defence's release transform.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"

struct nb_teacher {
	nb_net *net;
	const nb_teacher_ops *strategy;
	void *state;
	unsigned access;
	int classes;
};

nb_teacher *nb_teacher_wrap(nb_net *net, const nb_teacher_ops *strategy,
			    void *strategy_state, unsigned access, char *err)
{
	nb_teacher *t = calloc(1, sizeof *t);
	if (!t) {
		nb_errorf(err, NB_ENOMEM, "out of memory");
		return NULL;
	}
	int c, h, w;
	nb_net_node_shape(net, nb_net_output_node(net), &c, &h, &w);
	t->net = net;
	t->strategy = strategy;
	t->state = strategy_state;
	t->access = access;
	t->classes = c * h * w;
	nb_net_set_training(net, 0);
	nb_net_set_frozen(net, 1);
	return t;
}

void nb_teacher_free(nb_teacher *t)
{
	free(t);
}

int nb_teacher_classes(const nb_teacher *t)
{
	return t->classes;
}

nb_net *nb_teacher_network(nb_teacher *t)
{
	const unsigned white = NB_ACCESS_GRADIENTS | NB_ACCESS_FEATURES |
			       NB_ACCESS_BN_STATS;
	return t->access & white ? t->net : NULL;
}

int nb_teacher_query(nb_teacher *t, const float *x, int n, float *out,
		     char *err)
{
	nb_net_set_training(t->net, 0);
	int rc = nb_net_forward(t->net, x, n, err);
	if (rc < 0)
		return rc;
	memcpy(out, nb_net_output(t->net, nb_net_output_node(t->net)),
	       (size_t)n * t->classes * sizeof(float));
	if (t->strategy && t->strategy->release)
		return t->strategy->release(t->state, out, n, t->classes, err);
	return 0;
}

void nb_access_describe(unsigned access, char *buf, size_t len)
{
	static const struct {
		unsigned bit;
		const char *word;
	} white[] = {{NB_ACCESS_GRADIENTS, "gradients"},
		     {NB_ACCESS_FEATURES, "features"},
		     {NB_ACCESS_BN_STATS, "BatchNorm statistics"}};
	size_t n = 0;
	if (!len)
		return;
	buf[0] = 0;
	int any = 0;
	for (size_t i = 0; i < sizeof white / sizeof white[0] && n < len; i++)
		if (access & white[i].bit)
			n += snprintf(buf + n, len - n, "%s%s",
				      any++ ? ", " : "white box (",
				      white[i].word);
	if (n < len)
		n += snprintf(buf + n, len - n, "%s",
			      any ? ")" : "released outputs");
	if (n < len)
		snprintf(buf + n, len - n, ", %s",
			 access & NB_ACCESS_TRAIN_DATA ? "training data"
						       : "data-free");
}
