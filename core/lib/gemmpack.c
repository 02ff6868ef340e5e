/*
 * gemmpack.c - single-threaded SGEMM on packed operands (see gemmpack.h).
 *
 * Why not the BLAS: a convolution's GEMMs are small in M (16 to 64 output
 * channels for the CIFAR ResNets) and are called once per image, so a
 * general BLAS spends a good part of its time packing and on edge cases,
 * and a BLAS built for another core may not use the widest vectors at all.
 * Here the operands arrive packed (im2col writes its matrix straight into
 * column panels), and one register tile of NB_GP_MR x NB_GP_NR = 8 x 32
 * results (16 vectors of 16 floats) runs through the inner dimension with
 * one broadcast of A per pair of fused multiply-adds.
 *
 * The inner dimension is cut into chunks of KC so that the B panel a tile
 * reads stays in the L1 cache; the chunks run in order, so every element is
 * summed in the same order whatever M or N are.
 *
 * The code uses GCC/Clang vector extensions; nb_gp_available() is 1 only
 * where they compile to 512-bit registers (AVX-512), which is where this
 * beats the BLAS. Elsewhere it still computes the right result (the tests
 * run it everywhere), just without a reason to be chosen.
 */
#include <string.h>

#include "gemmpack.h"

#define MR NB_GP_MR
#define NR NB_GP_NR
#define KC 256 /* inner-dimension chunk: a 32 KB panel slice */

typedef float v16f __attribute__((vector_size(64)));
/* for loads and stores at any float address; may alias float */
typedef float v16f_u __attribute__((vector_size(64), aligned(4), may_alias));

static inline v16f loadu16(const float *p)
{
	return *(const v16f_u *)p;
}

int nb_gp_available(void)
{
#if defined(__AVX512F__)
	return 1;
#else
	return 0;
#endif
}

size_t nb_gp_a_floats(int M, int Kd)
{
	return (size_t)((M + MR - 1) / MR) * MR * Kd;
}

size_t nb_gp_b_floats(int Kd, int N)
{
	return (size_t)((N + NR - 1) / NR) * NR * Kd;
}

void nb_gp_pack_a(float *ap, const float *a, int M, int Kd, int lda)
{
	const int Mb = (M + MR - 1) / MR;
	for (int mb = 0; mb < Mb; mb++) {
		float *d = ap + (size_t)mb * Kd * MR;
		for (int r = 0; r < MR; r++) {
			const int m = mb * MR + r;
			if (m >= M) {
				for (int i = 0; i < Kd; i++)
					d[(size_t)i * MR + r] = 0.0f;
				continue;
			}
			const float *s = a + (size_t)m * lda;
			for (int i = 0; i < Kd; i++)
				d[(size_t)i * MR + r] = s[i];
		}
	}
}

void nb_gp_pack_b(float *bp, const float *b, int Kd, int N, int ldb)
{
	const int Nb = (N + NR - 1) / NR;
	for (int j = 0; j < Nb; j++) {
		const int n0 = j * NR, w = N - n0 < NR ? N - n0 : NR;
		float *d = bp + (size_t)j * Kd * NR;
		for (int i = 0; i < Kd; i++) {
			const float *s = b + (size_t)i * ldb + n0;
			float *o = d + (size_t)i * NR;
			if (w == NR) {
				*(v16f *)o = *(const v16f_u *)s;
				*(v16f *)(o + 16) = *(const v16f_u *)(s + 16);
				continue;
			}
			int n = 0;
			for (; n < w; n++)
				o[n] = s[n];
			for (; n < NR; n++)
				o[n] = 0.0f;
		}
	}
}

/*
 * One 8 x 32 tile: acc = (start) + sum over i < kd of a[i][r] * B[i][0..32),
 * start: the tile's current values when `load`, else bias (or zero).
 * Row i of B is the 16 floats at b0 + o and the 16 at b1 + o, where o is
 * i * NB_GP_NR for a packed panel (off NULL) or off[i] for a matrix given
 * implicitly; b1 NULL means columns 16..31 are zero. Inlined into each
 * caller, so every case compiles to its own loop.
 */
static inline __attribute__((always_inline)) void
tile_8x32(float *c, size_t ldc, int rows, int cols, const float *restrict a,
	  const float *b0, const float *b1, const int *off, int kd, int load,
	  const float *bias)
{
	v16f acc[MR][2];
	if (load && rows == MR && cols == NR) {
#pragma GCC unroll 8
		for (int r = 0; r < MR; r++) {
			acc[r][0] = *(const v16f_u *)(c + r * ldc);
			acc[r][1] = *(const v16f_u *)(c + r * ldc + 16);
		}
	} else if (load) {
		float t[MR][NR] __attribute__((aligned(64)));
		memset(t, 0, sizeof t);
		for (int r = 0; r < rows; r++)
			for (int n = 0; n < cols; n++)
				t[r][n] = c[r * ldc + n];
#pragma GCC unroll 8
		for (int r = 0; r < MR; r++) {
			acc[r][0] = *(const v16f *)t[r];
			acc[r][1] = *(const v16f *)(t[r] + 16);
		}
	} else {
#pragma GCC unroll 8
		for (int r = 0; r < MR; r++) {
			const float v = bias && r < rows ? bias[r] : 0.0f;
			acc[r][0] = (v16f){0} + v;
			acc[r][1] = acc[r][0];
		}
	}
	for (int i = 0; i < kd; i++) {
		const size_t o = off ? (size_t)off[i] : (size_t)i * NR;
		const v16f x0 = *(const v16f_u *)(b0 + o);
		const v16f x1 = b1 ? loadu16(b1 + o) : (v16f){0};
		const float *ai = a + (size_t)i * MR;
#pragma GCC unroll 8
		for (int r = 0; r < MR; r++) {
			acc[r][0] += ai[r] * x0;
			acc[r][1] += ai[r] * x1;
		}
	}
	if (rows == MR && cols == NR) {
#pragma GCC unroll 8
		for (int r = 0; r < MR; r++) {
			*(v16f_u *)(c + r * ldc) = acc[r][0];
			*(v16f_u *)(c + r * ldc + 16) = acc[r][1];
		}
		return;
	}
	float t[MR][NR] __attribute__((aligned(64)));
#pragma GCC unroll 8
	for (int r = 0; r < MR; r++) {
		*(v16f *)t[r] = acc[r][0];
		*(v16f *)(t[r] + 16) = acc[r][1];
	}
	for (int r = 0; r < rows; r++)
		for (int n = 0; n < cols; n++)
			c[r * ldc + n] = t[r][n];
}

void nb_gp_gemm(float *c, size_t ldc, int M, int N, int Kd, const float *ap,
		const float *bp, const float *bias, int accumulate)
{
	const int Mb = (M + MR - 1) / MR, Nb = (N + NR - 1) / NR;
	for (int k0 = 0; k0 < Kd; k0 += KC) {
		const int kd = Kd - k0 < KC ? Kd - k0 : KC;
		const int load = accumulate || k0 > 0;
		for (int j = 0; j < Nb; j++) {
			const int n0 = j * NR;
			const int cols = N - n0 < NR ? N - n0 : NR;
			const float *b = bp + ((size_t)j * Kd + k0) * NR;
			for (int mb = 0; mb < Mb; mb++) {
				const int m0 = mb * MR;
				const int rows = M - m0 < MR ? M - m0 : MR;
				tile_8x32(c + m0 * ldc + n0, ldc, rows, cols,
					  ap + ((size_t)mb * Kd + k0) * MR, b,
					  b + 16, NULL, kd, load,
					  bias ? bias + m0 : NULL);
			}
		}
	}
}

/* Where the 16 columns n..n+15 of an implicit B start in x (NULL if n is
 * past the end); see nb_gp_gemm_x. */
static inline const float *implicit_half(const float *x, int n, int N, int Q,
					 size_t ldx)
{
	if (n >= N)
		return NULL;
	return x + (size_t)(n / Q) * ldx + n % Q;
}

void nb_gp_gemm_x(float *c, size_t ldc, int M, int N, int Kd, const float *ap,
		  const float *x, const int *off, int Q, size_t ldx,
		  const float *bias, int accumulate)
{
	const int Mb = (M + MR - 1) / MR, Nb = (N + NR - 1) / NR;
	for (int k0 = 0; k0 < Kd; k0 += KC) {
		const int kd = Kd - k0 < KC ? Kd - k0 : KC;
		const int load = accumulate || k0 > 0;
		for (int j = 0; j < Nb; j++) {
			const int n0 = j * NR;
			const int cols = N - n0 < NR ? N - n0 : NR;
			const float *b0 = implicit_half(x, n0, N, Q, ldx);
			const float *b1 = implicit_half(x, n0 + 16, N, Q, ldx);
			for (int mb = 0; mb < Mb; mb++) {
				const int m0 = mb * MR;
				const int rows = M - m0 < MR ? M - m0 : MR;
				const float *a =
				    ap + ((size_t)mb * Kd + k0) * MR;
				float *ct = c + m0 * ldc + n0;
				const float *bs = bias ? bias + m0 : NULL;
				if (b1)
					tile_8x32(ct, ldc, rows, cols, a, b0,
						  b1, off + k0, kd, load, bs);
				else
					tile_8x32(ct, ldc, rows, cols, a, b0,
						  NULL, off + k0, kd, load, bs);
			}
		}
	}
}

#define SHUF __builtin_shufflevector
/*
 * The 16 lane sums of v[0..16) as one vector, lane i = the sum of v[i]'s
 * lanes, in a fixed tree of shuffles and adds: each level adds the two
 * halves of every block of 2h lanes of two vectors into one vector whose
 * blocks of h lanes alternate between them. After four levels lane i holds
 * input bitrev4(i), so the inputs are taken in bit-reversed order.
 */
static inline v16f reduce16(const v16f v[16])
{
	static const int rev[16] = {0, 8, 4, 12, 2, 10, 6, 14,
				    1, 9, 5, 13, 3, 11, 7, 15};
	v16f a[8], b[4], d[2];
	for (int k = 0; k < 8; k++) {
		const v16f x = v[rev[2 * k]], y = v[rev[2 * k + 1]];
		a[k] = SHUF(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20,
			    21, 22, 23) +
		       SHUF(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27,
			    28, 29, 30, 31);
	}
	for (int k = 0; k < 4; k++) {
		const v16f x = a[2 * k], y = a[2 * k + 1];
		b[k] = SHUF(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24,
			    25, 26, 27) +
		       SHUF(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15,
			    28, 29, 30, 31);
	}
	for (int k = 0; k < 2; k++) {
		const v16f x = b[2 * k], y = b[2 * k + 1];
		d[k] = SHUF(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12,
			    13, 28, 29) +
		       SHUF(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27,
			    14, 15, 30, 31);
	}
	return SHUF(d[0], d[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12,
		    28, 14, 30) +
	       SHUF(d[0], d[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13,
		    29, 15, 31);
}

/*
 * C (M x Nc) += A * B^T with B packed (off NULL: panel p's rows at
 * b + p * Nc * NB_GP_NR) or implicit (row i of B at x + off[i], positions
 * as in nb_gp_gemm_x). Inlined into each caller.
 */
static inline __attribute__((always_inline)) void
abt(float *c, size_t ldc, int M, int Nc, int np, const float *a, const float *b,
    const int *off, const float *x, int N, int Q, size_t ldx)
{
	const size_t as = (size_t)M * NR, bs = (size_t)Nc * NR;
	/* the four rows of A a tile reads stay in the L1 cache while B's rows
	 * stream past them */
	for (int m0 = 0; m0 < M; m0 += 4)
		for (int n0 = 0; n0 < Nc; n0 += 4) {
			/* rows past the end repeat the last one; their sums
			 * are dropped */
			int mi[4];
			size_t bo[4];
			for (int t = 0; t < 4; t++) {
				const int n = n0 + t < Nc ? n0 + t : Nc - 1;
				mi[t] = m0 + t < M ? m0 + t : M - 1;
				bo[t] = off ? (size_t)off[n] : (size_t)n * NR;
			}
			v16f acc[16];
#pragma GCC unroll 16
			for (int k = 0; k < 16; k++)
				acc[k] = (v16f){0};
			/* where the current 16 positions start in x: row xr,
			 * column xc, stepped without divisions */
			size_t xr = 0;
			int xc = 0;
			for (int p = 0; p < np; p++) {
				const float *ap = a + p * as;
				const float *h0, *h1;
				if (off) {
					h0 = x + xr * ldx + xc;
					xc += 16;
					if (xc == Q)
						xc = 0, xr++;
					h1 = p * NR + 16 < N ? x + xr * ldx + xc
							     : NULL;
					xc += 16;
					if (xc == Q)
						xc = 0, xr++;
				} else {
					h0 = b + p * bs;
					h1 = h0 + 16;
				}
				v16f a0[4], a1[4];
#pragma GCC unroll 4
				for (int k = 0; k < 4; k++) {
					a0[k] =
					    *(const v16f *)(ap + mi[k] * NR);
					a1[k] = *(
					    const v16f *)(ap + mi[k] * NR + 16);
				}
#pragma GCC unroll 4
				for (int y = 0; y < 4; y++) {
					const v16f b0 =
					    *(const v16f_u *)(h0 + bo[y]);
					const v16f b1 = h1 ? loadu16(h1 + bo[y])
							   : (v16f){0};
#pragma GCC unroll 4
					for (int k = 0; k < 4; k++) {
						acc[4 * k + y] += a0[k] * b0;
						acc[4 * k + y] += a1[k] * b1;
					}
				}
			}
			const v16f sum = reduce16(acc);
			for (int k = 0; k < 4 && m0 + k < M; k++)
				for (int y = 0; y < 4 && n0 + y < Nc; y++)
					c[(size_t)(m0 + k) * ldc + n0 + y] +=
					    sum[4 * k + y];
		}
}

void nb_gp_gemm_abt(float *c, size_t ldc, int M, int Nc, int np, const float *a,
		    const float *b)
{
	abt(c, ldc, M, Nc, np, a, b, NULL, NULL, 0, 1, 0);
}

void nb_gp_gemm_abt_x(float *c, size_t ldc, int M, int Nc, int N,
		      const float *a, const float *x, const int *off, int Q,
		      size_t ldx)
{
	abt(c, ldc, M, Nc, (N + NR - 1) / NR, a, NULL, off, x, N, Q, ldx);
}
