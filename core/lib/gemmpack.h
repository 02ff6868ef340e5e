/*
 * gemmpack.h - the engine's own single-threaded matrix products on packed
 * operands, shaped for convolutions: few rows (output channels), a short
 * inner dimension (input channels x taps) and many columns (output
 * positions). Internal to the library; conv2d.c is the user.
 *
 * Layouts (both zero-padded to whole blocks):
 *  - A (M x Kd) packed in row blocks of NB_GP_MR: element (m, i) lives at
 *    ap[(m / MR) * Kd * MR + i * MR + m % MR];
 *  - B (Kd x N) packed in column panels of NB_GP_NR: element (i, n) lives at
 *    bp[(n / NR) * Kd * NR + i * NR + n % NR].
 * Every packed buffer must be 64-byte aligned.
 */
#ifndef NB_GEMMPACK_H
#define NB_GEMMPACK_H

#include <stddef.h>

#define NB_GP_MR 8  /* rows of A per register tile */
#define NB_GP_NR 32 /* columns of B per panel: two 16-float vectors */

/*
 * A build for a generic x86-64 (./configure --disable-native, a distribution
 * package) compiles the kernels (functions marked NB_GP_CLONES, here and in
 * dwconv.c) twice, for x86-64-v4 (AVX-512) and for the baseline, and the
 * loader picks one on the machine it runs on.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&         \
    !defined(__AVX512F__)
#define NB_GP_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#define NB_GP_RUNTIME_CHECK 1
#else
#define NB_GP_CLONES
#define NB_GP_RUNTIME_CHECK 0
#endif

/* 1 if the packed kernels run on 512-bit vectors here (compiled for them,
 * or cloned and on a machine that has them): the only case in which
 * conv2d.c prefers them over the BLAS, and dwconv.c's depthwise kernels
 * over the plane ones. */
int nb_gp_available(void);

/* Floats a packed A (M x Kd) or B (Kd x N) takes. */
size_t nb_gp_a_floats(int M, int Kd);
size_t nb_gp_b_floats(int Kd, int N);

/* Offsets of element (m, i) in a packed A and (i, n) in a packed B. */
static inline size_t nb_gp_a_at(int Kd, int m, int i)
{
	return (size_t)(m / NB_GP_MR) * Kd * NB_GP_MR + (size_t)i * NB_GP_MR +
	       m % NB_GP_MR;
}
static inline size_t nb_gp_b_at(int Kd, int i, int n)
{
	return (size_t)(n / NB_GP_NR) * Kd * NB_GP_NR + (size_t)i * NB_GP_NR +
	       n % NB_GP_NR;
}

/* ap <- A (M x Kd, row-major, rows lda apart), padding rows zeroed. */
void nb_gp_pack_a(float *ap, const float *a, int M, int Kd, int lda);

/* bp <- B (Kd x N, row-major, rows ldb apart), padding columns zeroed. */
void nb_gp_pack_b(float *bp, const float *b, int Kd, int N, int ldb);

/*
 * C (M x N, rows ldc apart) = A * B (+ C if accumulate) (+ bias[m] on every
 * column of row m, if bias is not NULL). The sum over the inner dimension
 * runs in a fixed order, so a result depends only on the operands.
 */
void nb_gp_gemm(float *c, size_t ldc, int M, int N, int Kd, const float *ap,
		const float *bp, const float *bias, int accumulate);

/*
 * nb_gp_gemm with B given implicitly, for a stride-1 convolution on
 * zero-padded planes: element (i, n) of B is x[off[i] + (n / Q) * ldx + n % Q]
 * (off[i] says where tap i, im2col's row i, starts; n = p * Q + q is an
 * output position). Q must be a multiple of 16, so that the 16 positions
 * one vector holds never cross a row, or 8 with N a multiple of 16 (a
 * vector is then two rows), or N itself (a single row; the last vector
 * reads up to 15 floats past it). No im2col matrix is written.
 */
void nb_gp_gemm_x(float *c, size_t ldc, int M, int N, int Kd, const float *ap,
		  const float *x, const int *off, int Q, size_t ldx,
		  const float *bias, int accumulate);

/*
 * A convolution's weight gradient with the output channels on the vector
 * lanes: cT (Kd x Mp) += sum over images b < nimg and positions n < N of
 * X_b(i, n) * gT[b * N + n][..], where gT holds nimg * N rows of Mp floats
 * (Mp a multiple of 16, the output gradient transposed, lanes past the
 * channel count zero) and X_b(i, n) = x[b * xs + off[i] + (n / Q) * ldx +
 * n % Q]: the implicit im2col of nb_gp_gemm_x (any Q here), or packed
 * panels with Q = NB_GP_NR, ldx = Kd * NB_GP_NR, off[i] = i * NB_GP_NR. No
 * horizontal sums: every lane is one channel. Several images in one call
 * add up in registers, so cT is read and written once for all of them.
 */
void nb_gp_wgrad(float *cT, int Mp, int Kd, int N, int nimg, const float *gT,
		 const float *x, size_t xs, const int *off, int Q, size_t ldx);

/*
 * The same weight gradient with positions on the lanes, for few output
 * channels (with 16, nb_gp_wgrad loads a broadcast per multiply-add):
 * S (Kd x M x 16 lanes) += per-lane partial sums over positions n < N of
 * X(i, n) * g[m * ldg + n], X as for nb_gp_gemm_x with Q a multiple of 16.
 * nb_gp_wgrad_lanes_sum then adds each element's 16 lanes (in a fixed
 * order) to cT (Kd x Mp) and zeroes S, so one S gathers many images.
 */
void nb_gp_wgrad_lanes(float *S, int M, int Kd, int N, const float *g,
		       size_t ldg, const float *x, const int *off, int Q,
		       size_t ldx);
void nb_gp_wgrad_lanes_sum(float *cT, int Mp, float *S, int M, int Kd);

/* d (16 x 16, rows ldd apart) += s (16 x 16, rows lds apart) transposed:
 * one add per element, so the bits are an element-wise loop's. */
void nb_gp_add_transposed16(float *d, size_t ldd, const float *s, size_t lds);

/*
 * out (M x n, rows ldo apart, any alignment) op the first M columns of s
 * (n rows lds apart, lds a multiple of 16) transposed, op one of:
 * =, +=, = s + 0 (-0 becomes +0, as adding to a zeroed buffer), = ReLU(s),
 * = ReLU6(s) (as x < 0 ? 0 : x and its clamp at 6: -0 and NaN kept).
 */
enum {
	NB_GP_PUT_COPY,
	NB_GP_PUT_ADD,
	NB_GP_PUT_STORE,
	NB_GP_PUT_RELU,
	NB_GP_PUT_RELU6
};
void nb_gp_untranspose(float *out, size_t ldo, const float *s, size_t lds,
		       int M, int n, int op);

/* gT (N x Mp) <- g (M x N, rows ldg apart) transposed, lanes M..Mp zero;
 * with aff (a BatchNorm's save_affine, 4 floats per row of g) each element
 * normalised by its row's and activated (act, NB_ACT_*) first, as the
 * BatchNorm's forward does (bnaffine.h). */
void nb_gp_transpose_pad(float *gT, int Mp, const float *g, int M, int N,
			 int ldg, const float *aff, int act);

#endif
