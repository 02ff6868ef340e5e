/*
 * dafl.c - DAFL's generator and its three losses (see dafl.h).
 *
 * The losses follow loss.c's habits: per-row log-sum-exp in double, sums in
 * double, gradients added to float buffers times the caller's scale.
 *
 * What it deliberately does not do: the training step itself (the `dafl`
 * plugin owns it) and any threading (logits and features are tiny next to
 * the networks that make them).
 */
#include <math.h>
#include <stdlib.h>

#include "dafl.h"
#include "error.h"

#define TRY(call)                                                              \
	do {                                                                   \
		x = (call);                                                    \
		if (x < 0)                                                     \
			goto fail;                                             \
	} while (0)

int nb_dafl_generator(int latent, int c, int h, int w, int width, nb_net **out,
		      char *err)
{
	*out = NULL;
	if (latent < 1 || c < 1 || h < 4 || w < 4 || h % 4 || w % 4 ||
	    width < 2 || width % 2)
		return nb_errorf(err, NB_EINVAL,
				 "DAFL generator: latent %d, image %dx%dx%d, "
				 "width %d: the image sides must be multiples "
				 "of 4 and the width even",
				 latent, c, h, w, width);
	const int h0 = h / 4, w0 = w / 4;
	nb_net *net = nb_net_new(latent, 1, 1);
	if (!net)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int x = 0;
	TRY(nb_net_add_linear(net, x, "l1.0", width * h0 * w0, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_reshape(net, x, width, h0, w0, err));
	TRY(nb_net_add_batchnorm(net, x, "conv_blocks0.0", 1e-5f, 0.1f, 1,
				 err));
	TRY(nb_net_add_upsample(net, x, 2, err));
	TRY(nb_net_add_conv2d(net, x, "conv_blocks1.0", width, 3, 1, 1, 1, 1,
			      NB_INIT_DEFAULT, err));
	/* nn.BatchNorm2d(128, 0.8): the second argument is eps */
	TRY(nb_net_add_batchnorm(net, x, "conv_blocks1.1", 0.8f, 0.1f, 1, err));
	TRY(nb_net_add_leaky_relu(net, x, 0.2f, err));
	TRY(nb_net_add_upsample(net, x, 2, err));
	TRY(nb_net_add_conv2d(net, x, "conv_blocks2.0", width / 2, 3, 1, 1, 1,
			      1, NB_INIT_DEFAULT, err));
	TRY(nb_net_add_batchnorm(net, x, "conv_blocks2.1", 0.8f, 0.1f, 1, err));
	TRY(nb_net_add_leaky_relu(net, x, 0.2f, err));
	TRY(nb_net_add_conv2d(net, x, "conv_blocks2.3", c, 3, 1, 1, 1, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_tanh(net, x, err));
	TRY(nb_net_add_batchnorm(net, x, "conv_blocks2.5", 1e-5f, 0.1f, 0,
				 err));
	*out = net;
	return 0;
fail:
	nb_net_free(net);
	return x;
}

/* Softmax of one row into p (C doubles), max subtracted. */
static void row_softmax(const float *z, int C, double *p)
{
	double m = z[0];
	for (int i = 1; i < C; i++)
		if (z[i] > m)
			m = z[i];
	double s = 0;
	for (int i = 0; i < C; i++) {
		p[i] = exp((double)z[i] - m);
		s += p[i];
	}
	for (int i = 0; i < C; i++)
		p[i] /= s;
}

double nb_dafl_onehot_loss(const float *o, int B, int C, int *labels,
			   float *do_, float scale)
{
	if (B < 1 || C < 1)
		return NAN;
	double *p = malloc((size_t)C * sizeof *p);
	if (!p)
		return NAN;
	double total = 0, gs = (double)scale / B;
	for (int b = 0; b < B; b++) {
		const float *r = o + (size_t)b * C;
		int t = 0;
		for (int i = 1; i < C; i++)
			if (r[i] > r[t])
				t = i;
		if (labels)
			labels[b] = t;
		row_softmax(r, C, p);
		total += -log(p[t]);
		if (do_)
			for (int i = 0; i < C; i++)
				do_[(size_t)b * C + i] +=
				    (float)(gs * (p[i] - (i == t)));
	}
	free(p);
	return total / B;
}

double nb_dafl_entropy_loss(const float *o, int B, int C, float *do_,
			    float scale)
{
	if (B < 1 || C < 1)
		return NAN;
	double *p = malloc((size_t)B * C * sizeof *p);
	double *pm = calloc((size_t)C, sizeof *pm);
	double *g = malloc((size_t)C * sizeof *g);
	double total = NAN;
	if (!p || !pm || !g)
		goto out;
	for (int b = 0; b < B; b++) {
		row_softmax(o + (size_t)b * C, C, p + (size_t)b * C);
		for (int i = 0; i < C; i++)
			pm[i] += p[(size_t)b * C + i];
	}
	total = 0;
	for (int i = 0; i < C; i++) {
		pm[i] /= B;
		if (pm[i] > 0) {
			total += pm[i] * log10(pm[i]);
			g[i] = (log(pm[i]) + 1.0) / M_LN10;
		} else {
			g[i] = 0; /* every p_bi is 0: no gradient either */
		}
	}
	if (do_) {
		double gs = (double)scale / B;
		for (int b = 0; b < B; b++) {
			const double *pr = p + (size_t)b * C;
			double gp = 0;
			for (int k = 0; k < C; k++)
				gp += g[k] * pr[k];
			for (int j = 0; j < C; j++)
				do_[(size_t)b * C + j] +=
				    (float)(gs * pr[j] * (g[j] - gp));
		}
	}
out:
	free(p);
	free(pm);
	free(g);
	return total;
}

double nb_dafl_activation_loss(const float *f, size_t n, float *df, float scale)
{
	if (n == 0)
		return NAN;
	double s = 0, gs = (double)scale / (double)n;
	for (size_t i = 0; i < n; i++) {
		s += fabs((double)f[i]);
		if (df && f[i] != 0)
			df[i] += (float)(f[i] > 0 ? -gs : gs);
	}
	return -s / (double)n;
}
