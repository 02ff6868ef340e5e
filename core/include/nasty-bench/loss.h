/*
 * loss.h - the losses of the benchmark, with their gradients.
 *
 * All losses take logits z (B,C) row-major and return the loss value as a
 * double (accumulated in double). Where a gradient pointer is given, the
 * function ACCUMULATES (+=) scale * dL/dz into it; pass scale = 1 for the
 * plain gradient. NULL gradient pointers are skipped. Softmax is computed in
 * a numerically stable way (max subtracted), log-softmax directly.
 *
 * Semantics are PyTorch's, so that numbers compare with the paper's code:
 *  - cross entropy: mean over the batch of -log softmax(z)_y; with label
 *    smoothing eps the target is (1-eps)*onehot + eps/C (as
 *    nn.CrossEntropyLoss(label_smoothing=eps));
 *  - KL(p || q) with p = softmax(zp/tau), q = softmax(zq/tau), in
 *    nn.KLDivLoss(reduction="batchmean") form: sum over classes and batch of
 *    p*(log p - log q), divided by B, multiplied by tau^2.
 */
#ifndef NASTY_BENCH_LOSS_H
#define NASTY_BENCH_LOSS_H

/*
 * Cross entropy with optional label smoothing (0 <= smoothing < 1).
 * labels (B), each in [0, C). dz: dL/dz = (softmax(z) - target) / B.
 */
double nb_cross_entropy(const float *z, const int *labels, int B, int C,
			float smoothing, float *dz, float scale);

/*
 * tau^2 * KL(p || q), batchmean, p = softmax(zp/tau), q = softmax(zq/tau).
 * dzp, dzq: gradients with respect to either distribution's logits (each
 * may be NULL). With K_b = KL of row b:
 *   d/dzq = tau * (q - p) / B
 *   d/dzp = tau * p * (log p - log q - K_b) / B
 */
double nb_kl_div_temp(const float *zp, const float *zq, int B, int C,
		      float tau, float *dzp, float *dzq, float scale);

/* The parts of a composite loss, for logs. */
typedef struct nb_loss_terms {
	double total; /* the value that is minimised */
	double ce;    /* cross entropy with the labels */
	double kl;    /* tau^2 * KL term, before its weight */
} nb_loss_terms;

/*
 * Student KD loss (Hinton; the paper's loss_fn_kd):
 *   alpha * tau^2 * KL(p_T || p_S) + (1 - alpha) * CE(z_S, y).
 * z_s (B,C) the student's logits, z_t (B,C) the teacher's (constant).
 * dz_s: gradient with respect to the student's logits.
 */
double nb_kd_loss(const float *z_s, const float *z_t, const int *labels,
		  int B, int C, float alpha, float tau, float *dz_s,
		  float scale, nb_loss_terms *terms);

/*
 * Self-undermining (nasty) teacher loss, argument order as the paper's code:
 *   CE(z_n, y) - omega * tau^2 * KL(p_nasty || p_adversary)
 * z_n (B,C) the trainable nasty teacher's logits, z_a (B,C) the frozen
 * adversary's. dz_n: gradient with respect to the nasty teacher's logits.
 * The code's constant +100 (for a positive log) is not added: it has no
 * gradient and terms->total reports the true objective.
 */
double nb_nasty_loss(const float *z_n, const float *z_a, const int *labels,
		     int B, int C, float omega, float tau, float *dz_n,
		     float scale, nb_loss_terms *terms);

/* Number of rows whose argmax (first maximum) equals the label. */
int nb_count_correct(const float *z, const int *labels, int B, int C);

/* 1 if every value is finite. */
int nb_all_finite(const float *x, long n);

#endif
