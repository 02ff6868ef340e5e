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
 * summed in the same order whatever M or N are. B may also be given
 * implicitly, as shifted rows of zero-padded planes (no im2col at all).
 *
 * The weight gradient (a sum over output positions) puts the output
 * channels on the vector lanes instead: a tile of up to 8 taps x 4 vectors
 * of channels adds, per position, a broadcast input value times the
 * transposed output gradient, so no horizontal sum is needed. With a
 * single vector of channels (16 or fewer) that is a broadcast load per
 * multiply-add, and nb_gp_wgrad_lanes puts positions on the lanes instead:
 * a tile of 4 channels x 6 taps loads 10 vectors for 24 multiply-adds and
 * leaves per-lane partial sums, added across lanes once per batch chunk
 * (206-218 against 183-194 GFLOP/s hot for 16 channels on 32x32; with 32
 * channels on 16x16 it is the slower one, 176 against 214).
 *
 * The code uses GCC/Clang vector extensions; nb_gp_available() is 1 only
 * where they run on 512-bit registers (AVX-512), which is where this beats
 * the BLAS. Elsewhere it still computes the right result (the tests run it
 * everywhere), just without a reason to be chosen.
 */
#include <string.h>

#include "bnaffine.h"
#include "gemmpack.h"

/* The helpers below pass 64-byte vectors by value; they are always
 * inlined, so the calling convention a generic build would give them (and
 * warns about) never applies. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define MR NB_GP_MR
#define NR NB_GP_NR
#define KC 256 /* inner-dimension chunk: a 32 KB panel slice */

typedef float v16f __attribute__((vector_size(64)));
/* for loads and stores at any float address; may alias float */
typedef float v16f_u __attribute__((vector_size(64), aligned(4), may_alias));

static inline __attribute__((always_inline)) v16f loadu16(const float *p)
{
	return *(const v16f_u *)p;
}

typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));

/* 16 floats of B: at p, or (split, rows of 8 positions) 8 at p and 8 at
 * p + ldx */
static inline __attribute__((always_inline)) v16f load_b(const float *p,
							 int split, size_t ldx)
{
	if (!split)
		return loadu16(p);
	const v8f_u lo = *(const v8f_u *)p, hi = *(const v8f_u *)(p + ldx);
	return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
				       11, 12, 13, 14, 15);
}

#define GP_CLONES NB_GP_CLONES

int nb_gp_available(void)
{
#if defined(__AVX512F__)
	return 1;
#elif NB_GP_RUNTIME_CHECK
	__builtin_cpu_init();
	return __builtin_cpu_supports("x86-64-v4");
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

typedef float v8f __attribute__((vector_size(32)));

_Static_assert(MR == 8, "nb_gp_pack_a's whole blocks are 8 x 8 transposes");

/* m[0..8) <- its transpose, in registers (as transpose16 below) */
static inline __attribute__((always_inline)) void transpose8(v8f m[8])
{
	for (int r = 0; r < 8; r += 2) {
		const v8f x = m[r], y = m[r + 1];
		m[r] = __builtin_shufflevector(x, y, 0, 8, 2, 10, 4, 12, 6, 14);
		m[r + 1] =
		    __builtin_shufflevector(x, y, 1, 9, 3, 11, 5, 13, 7, 15);
	}
	for (int r = 0; r < 8; r++) {
		if (r & 2)
			continue;
		const v8f x = m[r], y = m[r + 2];
		m[r] = __builtin_shufflevector(x, y, 0, 1, 8, 9, 4, 5, 12, 13);
		m[r + 2] =
		    __builtin_shufflevector(x, y, 2, 3, 10, 11, 6, 7, 14, 15);
	}
	for (int r = 0; r < 4; r++) {
		const v8f x = m[r], y = m[r + 4];
		m[r] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11);
		m[r + 4] =
		    __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15);
	}
}

/* A whole block of MR = 8 rows is 8 x 8 transposes: 8 floats of each
 * row in, 64 contiguous floats out (element by element this was 3 % of
 * ResNet-18's inference); the inner dimension's tail and partial blocks go
 * element by element. */
GP_CLONES
void nb_gp_pack_a(float *ap, const float *a, int M, int Kd, int lda)
{
	const int Mb = (M + MR - 1) / MR;
	for (int mb = 0; mb < Mb; mb++) {
		float *d = ap + (size_t)mb * Kd * MR;
		if ((mb + 1) * MR <= M) {
			const float *s = a + (size_t)mb * MR * lda;
			int i = 0;
			for (; i + 8 <= Kd; i += 8) {
				v8f m[8];
				for (int r = 0; r < 8; r++)
					m[r] = *(
					    const v8f_u *)(s + (size_t)r * lda +
							   i);
				transpose8(m);
				for (int j = 0; j < 8; j++)
					*(v8f_u *)(d + (size_t)(i + j) * MR) =
					    m[j];
			}
			for (; i < Kd; i++)
				for (int r = 0; r < MR; r++)
					d[(size_t)i * MR + r] =
					    s[(size_t)r * lda + i];
			continue;
		}
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

GP_CLONES
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
 * implicitly; b1 NULL means columns 16..31 are zero; split: each 16 is two
 * rows of 8, ldx apart (see load_b). Inlined into each caller, so every
 * case compiles to its own loop.
 */
static inline __attribute__((always_inline)) void
tile_8x32(float *c, size_t ldc, int rows, int cols, const float *restrict a,
	  const float *b0, const float *b1, const int *off, int split,
	  size_t ldx, int kd, int load, const float *bias)
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
		const float *ai = a + (size_t)i * MR;
		const v16f x0 = load_b(b0 + o, split, ldx);
		/* b1 is a constant in every inlined copy: a tile of 16 columns
		 * (b1 NULL) does only the multiply-adds it needs */
		if (!b1) {
#pragma GCC unroll 8
			for (int r = 0; r < MR; r++)
				acc[r][0] += ai[r] * x0;
			continue;
		}
		const v16f x1 = load_b(b1 + o, split, ldx);
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

GP_CLONES
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
				const float *a =
				    ap + ((size_t)mb * Kd + k0) * MR;
				float *ct = c + m0 * ldc + n0;
				const float *bs = bias ? bias + m0 : NULL;
				if (cols > 16)
					tile_8x32(ct, ldc, rows, cols, a, b,
						  b + 16, NULL, 0, 0, kd, load,
						  bs);
				else
					tile_8x32(ct, ldc, rows, cols, a, b,
						  NULL, NULL, 0, 0, kd, load,
						  bs);
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

GP_CLONES
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
				/* four loops: rows of 16 or more, or of
				 * 8 (split), each with or without a
				 * second half */
				if (Q == 8 && b1)
					tile_8x32(ct, ldc, rows, cols, a, b0,
						  b1, off + k0, 1, ldx, kd,
						  load, bs);
				else if (Q == 8)
					tile_8x32(ct, ldc, rows, cols, a, b0,
						  NULL, off + k0, 1, ldx, kd,
						  load, bs);
				else if (b1)
					tile_8x32(ct, ldc, rows, cols, a, b0,
						  b1, off + k0, 0, 0, kd, load,
						  bs);
				else
					tile_8x32(ct, ldc, rows, cols, a, b0,
						  NULL, off + k0, 0, 0, kd,
						  load, bs);
			}
		}
	}
}

#define SHUF __builtin_shufflevector

/*
 * One tile of nb_gp_wgrad: TT taps (rows i0.. of X) x KV vectors of 16
 * output channels (from lane block v0), summed over all N positions in
 * registers, then added to cT. Each tap reads through its own pointer, so
 * the broadcast of X(i, n) is one load with no address arithmetic.
 */
static inline __attribute__((always_inline)) void
wg_tile(float *cT, int Mp, int v0, const int KV, const int TT, int i0, int Kd,
	int N, int nimg, const float *gT, const float *x, size_t xs,
	const int *off, int Q, size_t ldx)
{
	/* fixed sizes (not TT, KV), so that they live in registers */
	v16f acc[8][4];
	const float *xt[8];
#pragma GCC unroll 8
	for (int t = 0; t < TT; t++)
#pragma GCC unroll 4
		for (int v = 0; v < KV; v++)
			acc[t][v] = (v16f){0};
	const float *g = gT + (size_t)v0 * 16;
	for (int b = 0; b < nimg; b++) {
#pragma GCC unroll 8
		for (int t = 0; t < TT; t++)
			xt[t] = x + b * xs + off[i0 + t < Kd ? i0 + t : Kd - 1];
		for (int n = 0; n < N; n += Q) {
			const int len = N - n < Q ? N - n : Q;
			for (int q = 0; q < len; q++, g += Mp) {
				v16f gv[4];
#pragma GCC unroll 4
				for (int v = 0; v < KV; v++)
					gv[v] = *(const v16f *)(g + 16 * v);
#pragma GCC unroll 8
				for (int t = 0; t < TT; t++) {
					const float xv = xt[t][q];
#pragma GCC unroll 4
					for (int v = 0; v < KV; v++)
						acc[t][v] += xv * gv[v];
				}
			}
#pragma GCC unroll 8
			for (int t = 0; t < TT; t++)
				xt[t] += ldx;
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < TT; t++)
#pragma GCC unroll 4
		for (int v = 0; v < KV; v++) {
			if (i0 + t >= Kd)
				break;
			float *o = cT + (size_t)(i0 + t) * Mp + (v0 + v) * 16;
			*(v16f *)o += acc[t][v];
		}
}

/* every tile of lane blocks v0..v0+KV and taps i0..i1, TT at a time */
static inline __attribute__((always_inline)) void
wg_tiles(float *cT, int Mp, int v0, const int KV, const int TT, int i0, int i1,
	 int Kd, int N, int nimg, const float *gT, const float *x, size_t xs,
	 const int *off, int Q, size_t ldx)
{
	for (int i = i0; i < i1; i += TT)
		wg_tile(cT, Mp, v0, KV, TT, i, Kd, N, nimg, gT, x, xs, off, Q,
			ldx);
}

/* Taps per block of nb_gp_wgrad: a multiple of both tile heights (8, 6). */
#define WG_TAPS 48

GP_CLONES
void nb_gp_wgrad(float *cT, int Mp, int Kd, int N, int nimg, const float *gT,
		 const float *x, size_t xs, const int *off, int Q, size_t ldx)
{
	const int V = Mp / 16;
	/* Blocks of taps outermost: a block's rows of X stay in cache while
	 * every lane block passes over them (the whole X of ResNet-18's
	 * 4x4 stage, 4608 taps x 128 positions, would be read from memory
	 * once per lane block). */
	for (int i0 = 0; i0 < Kd; i0 += WG_TAPS) {
		const int i1 = Kd - i0 < WG_TAPS ? Kd : i0 + WG_TAPS;
		for (int v0 = 0; v0 < V;) {
			/* up to 24 accumulators: 8 taps x 1-3 vectors,
			 * 6 x 4 */
			switch (V - v0) {
			case 1:
				wg_tiles(cT, Mp, v0, 1, 8, i0, i1, Kd, N, nimg,
					 gT, x, xs, off, Q, ldx);
				v0 += 1;
				break;
			case 2:
				wg_tiles(cT, Mp, v0, 2, 8, i0, i1, Kd, N, nimg,
					 gT, x, xs, off, Q, ldx);
				v0 += 2;
				break;
			case 3:
				wg_tiles(cT, Mp, v0, 3, 8, i0, i1, Kd, N, nimg,
					 gT, x, xs, off, Q, ldx);
				v0 += 3;
				break;
			default:
				wg_tiles(cT, Mp, v0, 4, 6, i0, i1, Kd, N, nimg,
					 gT, x, xs, off, Q, ldx);
				v0 += 4;
				break;
			}
		}
	}
}

/*
 * One tile of nb_gp_wgrad_lanes: MT channels (rows m0.. of g) x TT taps
 * (rows i0.. of X), 16 positions on the lanes of every accumulator; each
 * position step loads MT + TT vectors for MT * TT multiply-adds. The lane
 * sums are added to S, not summed across lanes.
 */
static inline __attribute__((always_inline)) void
wl_tile(float *S, int M, const int MT, const int TT, int m0, int i0, int Kd,
	int N, const float *g, size_t ldg, const float *x, const int *off,
	int Q, size_t ldx)
{
	v16f acc[6][4];
	const float *xt[6], *gm[4];
#pragma GCC unroll 6
	for (int t = 0; t < TT; t++) {
		xt[t] = x + off[i0 + t < Kd ? i0 + t : Kd - 1];
#pragma GCC unroll 4
		for (int k = 0; k < MT; k++)
			acc[t][k] = (v16f){0};
	}
#pragma GCC unroll 4
	for (int k = 0; k < MT; k++)
		gm[k] = g + (size_t)(m0 + k < M ? m0 + k : M - 1) * ldg;
	for (int n = 0; n < N; n += Q) {
		for (int q = 0; q < Q; q += 16) {
			v16f gv[4];
#pragma GCC unroll 4
			for (int k = 0; k < MT; k++)
				gv[k] = loadu16(gm[k] + n + q);
#pragma GCC unroll 6
			for (int t = 0; t < TT; t++) {
				v16f xv = loadu16(xt[t] + q);
				/* one load into a register: folded into each
				 * multiply-add instead, an unaligned load
				 * (two cache lines) per multiply-add halves
				 * the speed. (Only where the whole build is
				 * AVX-512: a generic build's baseline clone
				 * has no register for 64 bytes.) */
#ifdef __AVX512F__
				__asm__("" : "+v"(xv));
#endif
#pragma GCC unroll 4
				for (int k = 0; k < MT; k++)
					acc[t][k] += xv * gv[k];
			}
		}
#pragma GCC unroll 6
		for (int t = 0; t < TT; t++)
			xt[t] += ldx;
	}
#pragma GCC unroll 6
	for (int t = 0; t < TT; t++)
#pragma GCC unroll 4
		for (int k = 0; k < MT; k++) {
			if (i0 + t >= Kd || m0 + k >= M)
				break;
			v16f_u *o =
			    (v16f_u *)(S +
				       ((size_t)(i0 + t) * M + m0 + k) * 16);
			*o = *o + acc[t][k];
		}
}

GP_CLONES
void nb_gp_wgrad_lanes(float *S, int M, int Kd, int N, const float *g,
		       size_t ldg, const float *x, const int *off, int Q,
		       size_t ldx)
{
	/* taps outermost: a block's rows of X stay in the L1 cache while
	 * the channel tiles pass over them */
	for (int i0 = 0; i0 < Kd; i0 += 6)
		for (int m0 = 0; m0 < M; m0 += 4)
			wl_tile(S, M, 4, 6, m0, i0, Kd, N, g, ldg, x, off, Q,
				ldx);
}

void nb_gp_wgrad_lanes_sum(float *cT, int Mp, float *S, int M, int Kd)
{
	for (int i = 0; i < Kd; i++)
		for (int m = 0; m < M; m++) {
			float *l = S + ((size_t)i * M + m) * 16;
			/* a fixed tree: lanes j and j + 8, then + 4, ... */
			for (int h = 8; h > 0; h /= 2)
				for (int j = 0; j < h; j++)
					l[j] += l[j + h];
			cT[(size_t)i * Mp + m] += l[0];
			memset(l, 0, sizeof(float) * 16);
		}
}

/*
 * m[0..16) <- its transpose, in registers: four stages, stage b swapping
 * bit b of the row index with bit b of the column index (rows r and r + b,
 * bit b of r clear, exchange the halves of every block of 2b columns).
 */
static inline __attribute__((always_inline)) void transpose16(v16f m[16])
{
#pragma GCC unroll 16
	for (int r = 0; r < 16; r++) {
		if (r & 1)
			continue;
		const v16f x = m[r], y = m[r + 1];
		m[r] = SHUF(x, y, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12,
			    28, 14, 30);
		m[r + 1] = SHUF(x, y, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27,
				13, 29, 15, 31);
	}
#pragma GCC unroll 16
	for (int r = 0; r < 16; r++) {
		if (r & 2)
			continue;
		const v16f x = m[r], y = m[r + 2];
		m[r] = SHUF(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12,
			    13, 28, 29);
		m[r + 2] = SHUF(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26,
				27, 14, 15, 30, 31);
	}
#pragma GCC unroll 16
	for (int r = 0; r < 16; r++) {
		if (r & 4)
			continue;
		const v16f x = m[r], y = m[r + 4];
		m[r] = SHUF(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24,
			    25, 26, 27);
		m[r + 4] = SHUF(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14,
				15, 28, 29, 30, 31);
	}
#pragma GCC unroll 16
	for (int r = 0; r < 16; r++) {
		if (r & 8)
			continue;
		const v16f x = m[r], y = m[r + 8];
		m[r] = SHUF(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20,
			    21, 22, 23);
		m[r + 8] = SHUF(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26,
				27, 28, 29, 30, 31);
	}
}

GP_CLONES
void nb_gp_add_transposed16(float *d, size_t ldd, const float *s, size_t lds)
{
	v16f blk[16];
	for (int r = 0; r < 16; r++)
		blk[r] = loadu16(s + (size_t)r * lds);
	transpose16(blk);
	for (int r = 0; r < 16; r++)
		*(v16f_u *)(d + (size_t)r * ldd) =
		    loadu16(d + (size_t)r * ldd) + blk[r];
}

GP_CLONES
void nb_gp_transpose_pad(float *gT, int Mp, const float *g, int M, int N,
			 int ldg, const float *aff, int act)
{
	const int op = nb_bn_act_op(act);
	/* 16 x 16 blocks, transposed in registers; rows past M and columns
	 * past N of a block read as zero */
	for (int n0 = 0; n0 < N; n0 += 16) {
		const int nn = N - n0 < 16 ? N - n0 : 16;
		for (int m0 = 0; m0 < Mp; m0 += 16) {
			v16f blk[16];
			for (int r = 0; r < 16; r++) {
				const int m = m0 + r;
				const float *src = g + (size_t)m * ldg + n0;
				if (m < M && nn == 16) {
					blk[r] = loadu16(src);
					if (aff)
						blk[r] = nb_bn_act16(
						    blk[r],
						    nb_bn_affine_at(aff, m),
						    op);
					continue;
				}
				blk[r] = (v16f){0};
				for (int c = 0; m < M && c < nn; c++)
					blk[r][c] =
					    aff ? nb_bn_act1(
						      src[c],
						      nb_bn_affine_at(aff, m),
						      op)
						: src[c];
			}
			transpose16(blk);
			for (int c = 0; c < nn; c++)
				*(v16f *)(gT + (size_t)(n0 + c) * Mp + m0) =
				    blk[c];
		}
	}
}

GP_CLONES
void nb_gp_untranspose(float *out, size_t ldo, const float *s, size_t lds,
		       int M, int n, int op)
{
	for (int p0 = 0; p0 < n; p0 += 16) {
		const int np = n - p0 < 16 ? n - p0 : 16;
		for (int m0 = 0; m0 < M; m0 += 16) {
			const int nm = M - m0 < 16 ? M - m0 : 16;
			v16f blk[16];
			for (int r = 0; r < 16; r++)
				blk[r] =
				    r < np
					? loadu16(s + (size_t)(p0 + r) * lds +
						  m0)
					: (v16f){0};
			transpose16(blk);
			for (int c = 0; c < nm; c++) {
				float *o = out + (size_t)(m0 + c) * ldo + p0;
				if (np == 16) {
					const v16f old = op == NB_GP_PUT_ADD
							     ? loadu16(o)
							     : (v16f){0};
					*(v16f_u *)o =
					    nb_put16(blk[c], old, op);
					continue;
				}
				for (int p = 0; p < np; p++)
					o[p] = nb_put1(blk[c][p], o[p], op);
			}
		}
	}
}
