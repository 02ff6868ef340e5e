/*
 * linear.c - the fully connected layer (PyTorch's Linear), forward and
 * backward, as one batch-level GEMM each.
 *
 * The GEMMs cover the whole batch, so they are large enough for OpenBLAS's
 * own threads; these functions therefore open no OpenMP region of their
 * own. OpenBLAS splits a GEMM by output tiles, never along the summed
 * dimension, so results are the same from run to run for a given thread
 * count.
 *
 * What it deliberately does not do: inputs with more than one leading
 * dimension (flatten first), or any activation.
 */
#include <string.h>

/* Keep cblas.h from pulling in <complex.h>, whose macro `I` breaks ops.h. */
#define FORCE_OPENBLAS_COMPLEX_STRUCT
#include <cblas.h>

#include "ops.h"

/* in (N,I), w (O,I), b (O) or NULL -> out (N,O) = in * w^T + b */
void nb_linear_forward(float *out, const float *in, const float *w,
		       const float *b, int N, int I, int O)
{
	float beta = 0.0f;
	if (b) {
		/* start from the bias and let the GEMM add */
		for (int n = 0; n < N; n++)
			memcpy(out + (size_t)n * O, b, sizeof(float) * O);
		beta = 1.0f;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, in,
		    I, w, I, beta, out, O);
}

/* dout (N,O), in (N,I), w (O,I) -> din (N,I) += dout * w,
 * dw (O,I) += dout^T * in, db (O) += column sums of dout; each may be
 * NULL. */
void nb_linear_backward(float *din, float *dw, float *db, const float *dout,
			const float *in, const float *w, int N, int I, int O)
{
	if (din)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, I, O,
			    1.0f, dout, O, w, I, 1.0f, din, I);
	if (dw)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, N,
			    1.0f, dout, O, in, I, 1.0f, dw, I);
	if (db)
		/* row by row so the inner loop runs along memory; the sum
		 * order over the batch is fixed */
		for (int n = 0; n < N; n++) {
			const float *g = dout + (size_t)n * O;
			for (int o = 0; o < O; o++)
				db[o] += g[o];
		}
}
