/*
 * winograd.c - 3x3 convolutions of stride 1 by Winograd's F(2x2, 3x3)
 * (see winograd.h).
 *
 * A 2x2 block of outputs of a 3x3 convolution needs 36 multiply-adds per
 * pair of channels taken directly; F(2x2, 3x3) takes it as 16 products of
 * transformed values (Lavin and Gray, "Fast algorithms for convolutional
 * neural networks", 2016):
 *
 *   Y = A^T [ (G g G^T) . (B^T d B) ] A
 *
 * with d the 4x4 input patch of the block, g the 3x3 filter, "." the
 * element-wise product and
 *
 *   B^T = | 1  0 -1  0 |   G = | 1    0    0   |   A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |       | 1/2  1/2  1/2 |         | 0  1 -1 -1 |
 *         | 0 -1  1  0 |       | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |       | 0    0    1   |
 *
 * Summed over input channels, each of the 16 positions xi of the 4x4
 * transformed block is a matrix product: M_xi (tiles x K) = V_xi (tiles x
 * C) U_xi (C x K). So a convolution becomes a transform of the input, 16
 * products with 2.25x fewer multiply-adds than the direct convolution's,
 * and a transform of the output; the products are where the time goes,
 * and they run on short, wide register tiles with the channels on the
 * vector lanes (every transform is then a handful of vector adds per tile,
 * whatever the map's size).
 *
 * The backward pass:
 *  - input gradient: a forward convolution of dout (padded by 1) with the
 *    filters flipped and their channel roles exchanged, the same code;
 *  - weight gradient: the gradient of the formula above,
 *      dg = G^T [ sum over tiles (A dY A^T) . (B^T d B) ] G,
 *    i.e. for each xi the product dU_xi (C x K) += V_xi^T Z_xi over the
 *    tiles, Z the transformed output gradient. Its sums run per thread,
 *    the partials added in thread order (as dwconv.c's).
 *
 * Each image is first transposed to positions x channels (channels padded
 * to whole vectors) into a zero-bordered buffer, and the output transposed
 * back. Images go in units of several (a unit's tiles are the rows of the
 * 16 products: enough rows for the register tiles, few enough for the
 * unit's transformed data to stay in the L2 cache). On maps 32 or 16 wide
 * with few channels the forward and the input gradient put the tiles on
 * the lanes instead and read and write NCHW as it is (see "tiles on the
 * lanes"; the same bits).
 *
 * Accuracy: the transforms' coefficients are 0, +-1 and +-1/2, so the
 * rounding is that of a sum taken in another order (F(4x4, 3x3), with 2x
 * fewer products still, has coefficients up to 8 and errors 10-100x
 * larger in fp32; it is not used).
 */
#include <string.h>

#include <omp.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "bnaffine.h"
#include "error.h"
#include "gemmpack.h"
#include "winograd.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float v16f __attribute__((vector_size(64)));

#define XI 16 /* positions of a transformed 4x4 block */
/* channels at most for the tiles on the lanes (with 64 on 32x32 maps they
 * were 8 % slower than on the channels' lanes) */
#define TL_CMAX 32

static size_t pad16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

int nb_wino_fits(const nb_conv2d_shape *s)
{
	return s->R == 3 && s->S == 3 && s->stride_h == 1 && s->stride_w == 1 &&
	       s->pad_h == 1 && s->pad_w == 1 && s->groups == 1;
}

/* the shape's derived sizes */
typedef struct wg_geom {
	int N, C, K, Cp, Kp; /* channels, and rounded up to whole vectors */
	int H, W;
	int th, tw, T; /* tiles of 2x2 outputs: rows, columns, per image */
	int Hb, Wb;    /* the zero-bordered buffer: (2 th + 2) x (2 tw + 2) */
	int nimg, NU;  /* images per unit, units */
	int rows;      /* a unit's rows of the products: nimg * T */
	int rb;	       /* rows of the products per block */
	int tl;	       /* tiles on the lanes (see there) */
	size_t HW;
} wg_geom;

static wg_geom geom(const nb_conv2d_shape *s, int lanes)
{
	wg_geom g = {.N = s->N,
		     .C = s->C,
		     .K = s->K,
		     .Cp = (s->C + 15) / 16 * 16,
		     .Kp = (s->K + 15) / 16 * 16,
		     .H = s->H,
		     .W = s->W};
	g.th = (g.H + 1) / 2;
	g.tw = (g.W + 1) / 2;
	g.T = g.th * g.tw;
	g.Hb = 2 * g.th + 2;
	g.Wb = 2 * g.tw + 2;
	g.HW = (size_t)g.H * g.W;
	/* a unit: at least 64 rows (with many channels, U, 16 x C x K
	 * floats, is read once per unit), and with few channels enough for
	 * a transformed input (16 x rows x channels) of 256 KB */
	const int cmax = g.Cp > g.Kp ? g.Cp : g.Kp;
	const int want = 4096 / cmax > 64 ? 4096 / cmax : 64;
	g.nimg = want / g.T > 1 ? want / g.T : 1;
	if (g.nimg > g.N)
		g.nimg = g.N;
	g.NU = (g.N + g.nimg - 1) / g.nimg;
	g.rows = g.nimg * g.T;
	/* the products go through a unit in blocks of rb rows: with 16 or
	 * 32 channels a block's V and M (16 x 16 x 32 floats each at most)
	 * stay in the L1 cache between the transforms and the products;
	 * with more, longer blocks read U fewer times (measured) */
	g.rb = cmax <= 32 ? 16 : 64;
	g.tl = lanes && (g.W == 32 || g.W == 16) && cmax <= TL_CMAX &&
	       g.C == g.Cp && g.K == g.Kp; /* (auto takes whole vectors) */
	if (g.rb > g.rows)
		g.rb = g.rows;
	return g;
}

/* ---- layouts ------------------------------------------------------------ */

/* Floats between two of the 16 planes of transformed data (rows x lanes):
 * a cache line more than they hold, so that the planes a transform reads
 * or writes together do not all fall into one set of the L1 cache (their
 * sizes are powers of two). */
static size_t plane_floats(int rows, int lanes)
{
	return (size_t)rows * lanes + 16;
}

/*
 * The image x (C x H x W) into buf (rows of Wb positions x Cp), its
 * interior from (1, 1) on; the border is left as it is (zero). Rows of
 * whole vectors are transposed in place, others through tr first. With
 * pre, each element normalised and activated on the way.
 */
static void place_in(float *buf, float *tr, const float *x, int C, int Cp,
		     const wg_geom *g, const nb_conv_pre *pre)
{
	const int H = g->H, W = g->W, Wb = g->Wb;
	const float *aff = pre ? pre->affine : NULL;
	const int act = pre ? pre->act : 0;
	if (W % 16 == 0) {
		for (int y = 0; y < H; y++)
			nb_gp_transpose_pad(
			    buf + ((size_t)(y + 1) * Wb + 1) * Cp, Cp,
			    x + (size_t)y * W, C, W, (int)g->HW, aff, act);
		return;
	}
	nb_gp_transpose_pad(tr, Cp, x, C, (int)g->HW, (int)g->HW, aff, act);
	for (int y = 0; y < H; y++)
		memcpy(buf + ((size_t)(y + 1) * Wb + 1) * Cp,
		       tr + (size_t)y * W * Cp, sizeof(float) * W * Cp);
}

/*
 * out (K x H x W) op (NB_GP_PUT_*) the positions of ob (rows of 2 tw
 * positions x Kp), transposed back; the rows gathered into gat first if
 * they are not contiguous (an odd width).
 */
static void take_out(float *out, const float *ob, float *gat, int K, int Kp,
		     const wg_geom *g, int op)
{
	const float *src = ob;
	if (2 * g->tw != g->W) {
		for (int y = 0; y < g->H; y++)
			memcpy(gat + (size_t)y * g->W * Kp,
			       ob + (size_t)y * 2 * g->tw * Kp,
			       sizeof(float) * g->W * Kp);
		src = gat;
	}
	nb_gp_untranspose(out, g->HW, src, Kp, K, (int)g->HW, op);
}

/* ---- transforms --------------------------------------------------------- */

#define LD(p) (*(const v16f *)(p))
#define ST(p, v) (*(v16f *)(p) = (v))
typedef float v16f_u __attribute__((vector_size(64), aligned(4), may_alias));
static inline __attribute__((always_inline)) v16f LD_U(const float *p)
{
	return *(const v16f_u *)p;
}
static inline __attribute__((always_inline)) void ST_U(float *p, v16f v)
{
	*(v16f_u *)p = v;
}

/*
 * The transforms take the rows r0..r1 of a unit: row r is tile t = r % T
 * of the unit's image r / T, tile (t / tw, t % tw) of its map; each image
 * has its buffer xs floats after the previous one's. Their results are
 * rows 0.. of 16 planes vs floats apart, plane xi = 4 a + s holding
 * position (a, s) of the 4x4 block.
 */

/* the 16 vectors of one tile, stored plane after plane */
static inline __attribute__((always_inline)) void store16(float *p, size_t vs,
							  const v16f o[16])
{
#pragma GCC unroll 16
	for (int x = 0; x < 16; x++) {
		ST(p, o[x]);
		p += vs;
	}
}

/* where row r's tile starts in its image's buffer (xs floats an image,
 * rows of Wb positions x lanes floats; tile (i, j) from (2 i, 2 j) on) */
static inline const float *tile_at(const float *x, size_t xs, int r, int T,
				   int tw, int Wb, int lanes)
{
	const int t = r % T, i = t / tw, j = t % tw;
	return x + (size_t)(r / T) * xs +
	       ((size_t)2 * i * Wb + (size_t)2 * j) * lanes;
}

/* v <- B^T d B, d the 4x4 patch of the tile in its bordered input (rows of
 * Wb positions x Cp, tile (i, j)'s patch from (2 i, 2 j) on) */
NB_GP_CLONES
static void in_tf(float *restrict v, size_t vs, const float *restrict x,
		  size_t xs, int Cp, int Wb, int T, int tw, int r0, int r1)
{
	for (int r = r0; r < r1; r++) {
		const float *d = tile_at(x, xs, r, T, tw, Wb, Cp);
		for (int c0 = 0; c0 < Cp; c0 += 16) {
			v16f q[4][4], o[16];
			for (int a = 0; a < 4; a++) {
				const float *row = d + (size_t)a * Wb * Cp + c0;
				const v16f d0 = LD(row), d1 = LD(row + Cp),
					   d2 = LD(row + 2 * Cp),
					   d3 = LD(row + 3 * Cp);
				q[a][0] = d0 - d2;
				q[a][1] = d1 + d2;
				q[a][2] = d2 - d1;
				q[a][3] = d1 - d3;
			}
			for (int s = 0; s < 4; s++) {
				o[0 + s] = q[0][s] - q[2][s];
				o[4 + s] = q[1][s] + q[2][s];
				o[8 + s] = q[2][s] - q[1][s];
				o[12 + s] = q[1][s] - q[3][s];
			}
			store16(v + (size_t)(r - r0) * Cp + c0, vs, o);
		}
	}
}

/* z's 16 planes (zs floats apart) <- A dY A^T for a vector of tiles,
 * y[a][b] row a, column b of each tile's 2x2 block of dY */
static inline __attribute__((always_inline)) void a_dy_at(float *z, size_t zs,
							  const v16f y[2][2])
{
	v16f q[2][4], o[16];
	for (int a = 0; a < 2; a++) {
		q[a][0] = y[a][0];
		q[a][1] = y[a][0] + y[a][1];
		q[a][2] = y[a][0] - y[a][1];
		q[a][3] = -y[a][1];
	}
	for (int s = 0; s < 4; s++) {
		o[0 + s] = q[0][s];
		o[4 + s] = q[0][s] + q[1][s];
		o[8 + s] = q[0][s] - q[1][s];
		o[12 + s] = -q[1][s];
	}
	store16(z, zs, o);
}

/* z <- A dY A^T, dY the tile's 2x2 block of the output gradient in y (as
 * x above with Kp lanes, the block from (2 i, 2 j) on; zero past the
 * map) */
NB_GP_CLONES
static void z_tf(float *restrict z, size_t zs, const float *restrict y,
		 size_t ys, int Kp, int Wb, int T, int tw, int r0, int r1)
{
	for (int r = r0; r < r1; r++) {
		const float *d = tile_at(y, ys, r, T, tw, Wb, Kp);
		for (int c0 = 0; c0 < Kp; c0 += 16) {
			v16f y2[2][2];
			for (int a = 0; a < 2; a++) {
				const float *row = d + (size_t)a * Wb * Kp + c0;
				y2[a][0] = LD(row);
				y2[a][1] = LD(row + Kp);
			}
			a_dy_at(z + (size_t)(r - r0) * Kp + c0, zs, y2);
		}
	}
}

/* y = A^T m A for the 16 vectors of one tile's transformed block, plane
 * xi = 4 a + s at p + xi * ms (y[a][b]: output row a, column b) */
static inline __attribute__((always_inline)) void at_a(const float *p,
						       size_t ms, v16f y[2][2])
{
	v16f mm[16], s0[4], s1[4];
#pragma GCC unroll 16
	for (int x = 0; x < 16; x++) {
		mm[x] = LD(p);
		p += ms;
	}
	for (int s = 0; s < 4; s++) {
		s0[s] = mm[s] + mm[4 + s] + mm[8 + s];
		s1[s] = mm[4 + s] - mm[8 + s] - mm[12 + s];
	}
	y[0][0] = s0[0] + s0[1] + s0[2];
	y[0][1] = s0[1] - s0[2] - s0[3];
	y[1][0] = s1[0] + s1[1] + s1[2];
	y[1][1] = s1[1] - s1[2] - s1[3];
}

/* the tile's 2x2 outputs (+ bias) <- A^T m A, into its image's output
 * positions (rows of 2 tw positions x Kp, os floats per image) */
NB_GP_CLONES
static void out_tf(float *restrict o, size_t os, const float *restrict m,
		   size_t ms, const float *bias, int Kp, int T, int tw, int r0,
		   int r1)
{
	const size_t wo = (size_t)2 * tw;
	for (int r = r0; r < r1; r++) {
		const int t = r % T, i = t / tw, j = t % tw;
		float *ot = o + (size_t)(r / T) * os +
			    ((size_t)2 * i * wo + (size_t)2 * j) * Kp;
		const float *mt = m + (size_t)(r - r0) * Kp;
		for (int c0 = 0; c0 < Kp; c0 += 16) {
			v16f y[2][2];
			at_a(mt + c0, ms, y);
			v16f y00 = y[0][0], y01 = y[0][1], y10 = y[1][0],
			     y11 = y[1][1];
			if (bias) {
				const v16f bv = LD(bias + c0);
				y00 += bv;
				y01 += bv;
				y10 += bv;
				y11 += bv;
			}
			ST(ot + c0, y00);
			ST(ot + Kp + c0, y01);
			ST(ot + wo * Kp + c0, y10);
			ST(ot + (wo + 1) * Kp + c0, y11);
		}
	}
}

/* ---- tiles on the lanes ------------------------------------------------- */

/*
 * On maps 32 wide (the CIFAR networks' first stage) a row of tiles is 16
 * tiles: one vector; on maps 16 wide a vector holds two rows of tiles.
 * There the transforms read and write NCHW directly,
 * each vector 16 tiles of one channel (a tile's columns split into even
 * and odd ones by two shuffles), and the products put the tiles on the
 * lanes too: out^T_xi (K x tiles) = U^T_xi (K x C) V^T_xi (C x tiles), so
 * no image is transposed, and with 16 output channels a product loads half
 * a vector per multiply-add instead of a broadcast for each. The forward
 * and the input gradient compute every element with the same operations
 * in the same order as on the channels' lanes (same bits; a test compares
 * them). The weight gradient (wg_unit_tl) sums each weight's products over
 * the tiles on the lanes, in four partial sums (lane_tile).
 */
#define SHUF __builtin_shufflevector

/*
 * d0..d3 of a vector of 16 tiles from l0, l1 (32 floats): one 32-wide row,
 * or two 16-wide rows (tiles 0..7 from l0, 8..15 from l1); zero past the
 * rows' ends
 */
static inline __attribute__((always_inline)) void cols4(v16f l0, v16f l1,
							int w16, v16f d[4])
{
	const v16f z = {0};
	const v16f e = SHUF(l0, l1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
			    24, 26, 28, 30),
		   o = SHUF(l0, l1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23,
			    25, 27, 29, 31);
	if (w16) {
		d[0] = SHUF(z, o, 0, 16, 17, 18, 19, 20, 21, 22, 0, 24, 25, 26,
			    27, 28, 29, 30);
		d[3] = SHUF(e, z, 1, 2, 3, 4, 5, 6, 7, 16, 9, 10, 11, 12, 13,
			    14, 15, 16);
	} else {
		d[0] = SHUF(z, o, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
			    26, 27, 28, 29, 30); /* x[2j - 1] */
		d[3] = SHUF(e, z, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
			    15, 16); /* x[2j + 2] */
	}
	d[1] = e; /* x[2j] */
	d[2] = o; /* x[2j + 1] */
}

/* row y of plane p (H x W), or zeros past the map; with pre (a its
 * channel's normalisation, op its activation) normalised and activated */
static inline __attribute__((always_inline)) v16f row16(const float *p, int y,
							int H, int W, int half,
							int pre, nb_bn_affine a,
							int op)
{
	if (y < 0 || y >= H)
		return (v16f){0};
	const v16f r = LD_U(p + (size_t)y * W + 16 * half);
	return pre ? nb_bn_act16(r, a, op) : r;
}

/* prefetch the output rows of the tile vectors iv0..iv1 in plane p (H x
 * W, W 32 or 16): out_tl reads a plane a block of tile rows at a time,
 * channel after channel, which the hardware's prefetchers missed */
static inline __attribute__((always_inline)) void
pf_rows(const float *p, int H, int W, int iv0, int iv1)
{
	const int per = W == 16 ? 4 : 2; /* rows a vector covers */
	const int r1 = per * iv1 < H ? per * iv1 : H;
	const char *a = (const char *)(p + (size_t)per * iv0 * W),
		   *e = (const char *)(p + (size_t)r1 * W);
	for (; a < e; a += 64)
		__builtin_prefetch(a);
}

/* the columns' transform of one row of d (its four columns d[0..3]) */
static inline __attribute__((always_inline)) void bt_cols(const v16f d[4],
							  v16f q[4])
{
	q[0] = d[0] - d[2];
	q[1] = d[1] + d[2];
	q[2] = d[2] - d[1];
	q[3] = d[1] - d[3];
}

/* v's 16 planes for one vector of tiles from the columns' transforms of
 * its four rows */
static inline __attribute__((always_inline)) void
bt_rows(float *v, size_t vs, const v16f q0[4], const v16f q1[4],
	const v16f q2[4], const v16f q3[4])
{
	v16f o[16];
	for (int s = 0; s < 4; s++) {
		o[0 + s] = q0[s] - q2[s];
		o[4 + s] = q1[s] + q2[s];
		o[8 + s] = q2[s] - q1[s];
		o[12 + s] = q1[s] - q3[s];
	}
	store16(v, vs, o);
}

/*
 * in_tl for one setting of W (16 or 32) and of pre (PRE: pre not NULL).
 * With W 32 a vector is one row of tiles, and the next vector's first two
 * rows are this one's last two: their columns' transforms are carried
 * over (the same operations on each row, so the same bits).
 */
static inline __attribute__((always_inline)) void
in_tl_t(float *restrict v, size_t vs, size_t vrow, const float *restrict x,
	int C, int H, int W, int iv0, int iv1, const nb_conv_pre *pre,
	const int W16, const int PRE)
{
	const int op = PRE ? nb_bn_act_op(pre->act) : 0;
	for (int c = 0; c < C; c++) {
		const float *p = x + (size_t)c * H * W;
		const nb_bn_affine na =
		    PRE ? nb_bn_affine_at(pre->affine, c) : (nb_bn_affine){0};
		float *vc = v + (size_t)c * vrow;
		if (!W16) {
			v16f q[4][4], d[4];
			for (int a = 0; a < 2; a++) {
				const int y = 2 * iv0 + a - 1;
				cols4(row16(p, y, H, W, 0, PRE, na, op),
				      row16(p, y, H, W, 1, PRE, na, op), 0, d);
				bt_cols(d, q[a]);
			}
			for (int iv = iv0; iv < iv1; iv++) {
				for (int a = 2; a < 4; a++) {
					const int y = 2 * iv + a - 1;
					cols4(row16(p, y, H, W, 0, PRE, na, op),
					      row16(p, y, H, W, 1, PRE, na, op),
					      0, d);
					bt_cols(d, q[a]);
				}
				bt_rows(vc + (size_t)(iv - iv0) * 16, vs, q[0],
					q[1], q[2], q[3]);
				for (int s = 0; s < 4; s++) {
					q[0][s] = q[2][s];
					q[1][s] = q[3][s];
				}
			}
			continue;
		}
		for (int iv = iv0; iv < iv1; iv++) {
			const int i = 2 * iv;
			/* rows 2 i - 1..2 i + 4, each read once */
			v16f r[6], q[4][4];
			for (int a = 0; a < 6; a++)
				r[a] = row16(p, 2 * i + a - 1, H, W, 0, PRE, na,
					     op);
			for (int a = 0; a < 4; a++) {
				v16f d[4];
				cols4(r[a], r[a + 2], 1, d);
				bt_cols(d, q[a]);
			}
			bt_rows(vc + (size_t)(iv - iv0) * 16, vs, q[0], q[1],
				q[2], q[3]);
		}
	}
}

/*
 * v (16 planes vs floats apart; channel c's row at c * vrow, vector iv's
 * 16 tiles at (iv - iv0) * 16) <- B^T d B for the tile vectors iv0..iv1 of
 * the image x (C x H x W, W 32 or 16: a vector is one or two tile rows),
 * normalised and activated by pre (or NULL) as it is read
 */
NB_GP_CLONES
static void in_tl(float *restrict v, size_t vs, size_t vrow,
		  const float *restrict x, int C, int H, int W, int iv0,
		  int iv1, const nb_conv_pre *pre)
{
	if (W == 16 && pre)
		in_tl_t(v, vs, vrow, x, C, H, W, iv0, iv1, pre, 1, 1);
	else if (W == 16)
		in_tl_t(v, vs, vrow, x, C, H, W, iv0, iv1, pre, 1, 0);
	else if (pre)
		in_tl_t(v, vs, vrow, x, C, H, W, iv0, iv1, pre, 0, 1);
	else
		in_tl_t(v, vs, vrow, x, C, H, W, iv0, iv1, pre, 0, 0);
}

/* r[j] <- tiles 4 j..4 j + 3 of p[0], then of p[1], p[2], p[3] (a 4 x 4
 * transpose of 4-float blocks) */
static inline __attribute__((always_inline)) void quads4(const v16f p[4],
							 v16f r[4])
{
	const v16f t0 = SHUF(p[0], p[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19,
			     20, 21, 22, 23),
		   t1 = SHUF(p[0], p[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25,
			     26, 27, 28, 29, 30, 31),
		   t2 = SHUF(p[2], p[3], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19,
			     20, 21, 22, 23),
		   t3 = SHUF(p[2], p[3], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25,
			     26, 27, 28, 29, 30, 31);
	r[0] = SHUF(t0, t2, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25,
		    26, 27);
	r[1] = SHUF(t0, t2, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29,
		    30, 31);
	r[2] = SHUF(t1, t3, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25,
		    26, 27);
	r[3] = SHUF(t1, t3, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29,
		    30, 31);
}

/*
 * z <- A dY A^T for the tile vectors iv0..iv1 of the output gradient y (K
 * x H x W, W 32 or 16; each tile's 2x2 block zero past the map), with four
 * output channels on each vector's lanes for the weight gradient's
 * products (lane_tile): plane xi at z + xi * zs holds rows of K / 4
 * channel quads, zq floats apart; in a row, vector 4 (iv - iv0) + j holds
 * tiles 4 j..4 j + 3 of vector iv for channel 4 q, then 4 q + 1, 4 q + 2,
 * 4 q + 3 (K a multiple of 4). The transform works lane by lane, so
 * the columns are interleaved before it.
 */
NB_GP_CLONES
static void z_tl(float *restrict z, size_t zs, size_t zq,
		 const float *restrict y, int K, int H, int W, int iv0, int iv1)
{
	const int w16 = W == 16;
	const nb_bn_affine none = {0};
	for (int k0 = 0; k0 < K; k0 += 4)
		for (int iv = iv0; iv < iv1; iv++) {
			const int i = w16 ? 2 * iv : iv;
			/* columns 2 j and 2 j + 1 of rows 2 i, 2 i + 1: e[a],
			 * o[a] of each channel, then of the quad */
			v16f e[2][4], o[2][4];
#pragma GCC unroll 4
			for (int kk = 0; kk < 4; kk++) {
				const int k = k0 + kk;
				for (int a = 0; a < 2; a++) {
					const float *p = y + (size_t)k * H * W;
					const int r = 2 * i + a;
					v16f d[4];
					if (w16)
						cols4(row16(p, r, H, W, 0, 0,
							    none, 0),
						      row16(p, r + 2, H, W, 0,
							    0, none, 0),
						      1, d);
					else
						cols4(row16(p, r, H, W, 0, 0,
							    none, 0),
						      row16(p, r, H, W, 1, 0,
							    none, 0),
						      0, d);
					e[a][kk] = d[1];
					o[a][kk] = d[2];
				}
			}
			v16f qe[2][4], qo[2][4];
#pragma GCC unroll 2
			for (int a = 0; a < 2; a++) {
				quads4(e[a], qe[a]);
				quads4(o[a], qo[a]);
			}
#pragma GCC unroll 4
			for (int j = 0; j < 4; j++) {
				const v16f y2[2][2] = {{qe[0][j], qo[0][j]},
						       {qe[1][j], qo[1][j]}};
				a_dy_at(z + (size_t)(k0 / 4) * zq +
					    (size_t)(4 * (iv - iv0) + j) * 16,
					zs, y2);
			}
		}
}

/*
 * The BatchNorm backward's first pass, taken as out_tl writes an image's
 * input gradient (nb_conv_pre's sums): each value masked by the
 * activation (recomputed from x) as it is written, and added into the
 * slice's lanes as batchnorm.c's slice_grad_sums adds it (the same
 * operations in the same order: a row's 16 positions are lanes 0..15,
 * rows in order).
 */
typedef struct wg_bsum {
	const float *x;	   /* the image's BatchNorm input (C x H x W) */
	const float *aff;  /* save_affine */
	const float *mean; /* save_mean */
	int act;
	double *acc; /* per channel: NB_BN_LANES lanes each of the sums of
			dy, of x - mean, of dy * (x - mean) */
} wg_bsum;

/*
 * A training BatchNorm's statistics of the forward's output, taken as
 * out_tl writes it (nb_conv_post's stats): x - K and (x - K)^2 added into
 * the slice's lanes as batchnorm.c's slice_stats adds them (a row's 16
 * positions are lanes 0..15, rows in order).
 */
typedef struct wg_fsum {
	const double *K; /* per channel: the first element of image 0 */
	double *acc;	 /* per channel: NB_BN_LANES lanes each of the sums of
			    x - K, of (x - K)^2 */
} wg_fsum;

typedef double v8d __attribute__((vector_size(64)));

/* the low (h 0) or high (h 1) 8 floats of v as doubles (exact); GCC 12
 * lowers __builtin_convertvector to four 4-float pieces, so on AVX-512
 * the instruction is named */
static inline __attribute__((always_inline)) v8d half_pd(v16f v, int h)
{
#ifdef __AVX512F__
	const __m512 x = (__m512)v;
	return (v8d)_mm512_cvtps_pd(
	    h ? (__m256)_mm512_extractf64x4_pd((__m512d)x, 1)
	      : _mm512_castps512_ps256(x));
#else
	return h ? __builtin_convertvector(
		       SHUF(v, v, 8, 9, 10, 11, 12, 13, 14, 15), v8d)
		 : __builtin_convertvector(SHUF(v, v, 0, 1, 2, 3, 4, 5, 6, 7),
					   v8d);
#endif
}

/* s[0], s[1] += a0, a1 (the low and high halves of 16 lanes) */
static inline __attribute__((always_inline)) void acc2(v8d *s, v8d a0, v8d a1)
{
	s[0] += a0;
	s[1] += a1;
}

/* s[0], s[1] += a0 b0, a1 b1, each product rounded on its own where
 * batchnorm.c's is (NB_UNFUSED) */
static inline __attribute__((always_inline)) void
acc2_prod(v8d *s, v8d a0, v8d a1, v8d b0, v8d b1)
{
	v8d p0 = a0 * b0, p1 = a1 * b1;
	NB_UNFUSED(p0);
	NB_UNFUSED(p1);
	acc2(s, p0, p1);
}

/* o op= r (16 floats); with bs (channel k of it: a, m) masked and summed
 * too, into the lanes A (a copy of the channel's acc, in registers), x the
 * row's BatchNorm inputs; with fs, what is written summed into the lanes F
 * (channel k's, Kk its first element) */
static inline __attribute__((always_inline)) void
put_row(float *o, v16f r, int op, const wg_bsum *bs, const float *x,
	nb_bn_affine a, double m, v8d *A, const wg_fsum *fs, double Kk, v8d *F)
{
	v16f f = nb_put16(r, op == NB_GP_PUT_ADD ? LD_U(o) : (v16f){0}, op);
	if (fs) {
		const v8d d0 = half_pd(f, 0) - Kk, d1 = half_pd(f, 1) - Kk;
		acc2(F, d0, d1);
		acc2_prod(F + 2, d0, d1, d0, d1);
	}
	if (bs) {
		const v16f xv = LD_U(x);
		if (bs->act)
			f = nb_bn_mask16(f, xv, a, bs->act);
		const v8d g0 = half_pd(f, 0), g1 = half_pd(f, 1),
			  d0 = half_pd(xv, 0) - m, d1 = half_pd(xv, 1) - m;
		acc2(A, g0, g1);
		acc2(A + 2, d0, d1);
		acc2_prod(A + 4, g0, g1, d0, d1);
	}
	ST_U(o, f);
}

/*
 * out (K x H x W) op (NB_GP_PUT_*) A^T m A (+ bias[k]) (+ res, K x H x W,
 * if not NULL) for the tile vectors iv0..iv1, m as v above with K rows
 */
static inline __attribute__((always_inline)) void
out_tl_t(float *out, const float *restrict m, size_t ms, size_t mrow,
	 const float *bias, const float *res, int K, int H, int W, int iv0,
	 int iv1, int op, const wg_bsum *bs, const wg_fsum *fs)
{
	const int w16 = W == 16;
	for (int k = 0; k < K; k++)
		for (int iv = iv0; iv < iv1; iv++) {
			const nb_bn_affine ba = bs ? nb_bn_affine_at(bs->aff, k)
						   : (nb_bn_affine){0};
			const double bm = bs ? bs->mean[k] : 0.0;
			v8d *acc =
			    bs ? (v8d *)(bs->acc + (size_t)k * 3 * NB_BN_LANES)
			       : NULL;
			/* the lanes in registers (constant indices: a copy
			 * through memory stalled on store forwarding) */
			v8d A[6] = {{0}};
			if (bs)
#pragma GCC unroll 6
				for (int q = 0; q < 6; q++)
					A[q] = acc[q];
			v8d *facc =
			    fs ? (v8d *)(fs->acc + (size_t)k * 2 * NB_BN_LANES)
			       : NULL;
			const double Kk = fs ? fs->K[k] : 0.0;
			v8d F[4] = {{0}};
			if (fs)
#pragma GCC unroll 4
				for (int q = 0; q < 4; q++)
					F[q] = facc[q];
			const float *xk = bs ? bs->x + (size_t)k * H * W : NULL;
			/* what the next channel's rows of this block read,
			 * ahead */
			if (iv == iv0 && k + 1 < K) {
				const size_t nx = (size_t)(k + 1) * H * W;
				if (bs)
					pf_rows(bs->x + nx, H, W, iv0, iv1);
				if (res)
					pf_rows(res + nx, H, W, iv0, iv1);
				if (op == NB_GP_PUT_ADD)
					pf_rows(out + nx, H, W, iv0, iv1);
			}
			v16f y[2][2];
			at_a(m + (size_t)k * mrow + (size_t)(iv - iv0) * 16, ms,
			     y);
			if (bias)
				for (int a = 0; a < 2; a++)
					for (int b = 0; b < 2; b++)
						y[a][b] += bias[k];
			float *pk = out + (size_t)k * H * W;
			const int i = w16 ? 2 * iv : iv;
			/* tiles 0..7 and 8..15, columns interleaved */
			v16f lo[2], hi[2];
			for (int a = 0; a < 2; a++) {
				lo[a] =
				    SHUF(y[a][0], y[a][1], 0, 16, 1, 17, 2, 18,
					 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
				hi[a] = SHUF(y[a][0], y[a][1], 8, 24, 9, 25, 10,
					     26, 11, 27, 12, 28, 13, 29, 14, 30,
					     15, 31);
			}
			/* rows in order (32 wide: row 2 i + a is lo[a], hi[a];
			 * 16 wide: rows 4 iv.. are lo[0], lo[1], hi[0], hi[1])
			 */
			for (int j = 0; j < 4; j++) {
				const int r = w16 ? 2 * i + j : 2 * i + j / 2;
				const int c0 = w16 ? 0 : 16 * (j % 2);
				v16f v = w16 ? (j < 2 ? lo[j] : hi[j - 2])
					     : (j % 2 ? hi[j / 2] : lo[j / 2]);
				if (r >= H)
					continue;
				const size_t at = (size_t)r * W + c0;
				if (res)
					v += LD_U(res + (size_t)k * H * W + at);
				put_row(pk + at, v, op, bs, bs ? xk + at : NULL,
					ba, bm, A, fs, Kk, F);
			}
			if (bs)
#pragma GCC unroll 6
				for (int q = 0; q < 6; q++)
					acc[q] = A[q];
			if (fs)
#pragma GCC unroll 4
				for (int q = 0; q < 4; q++)
					facc[q] = F[q];
		}
}

/* out_tl_t without and with a BatchNorm's sums or statistics, each
 * compiled on its own (one loop with both kept the sums' registers in the
 * forward's) */
NB_GP_CLONES
static void out_tl_plain(float *out, const float *restrict m, size_t ms,
			 size_t mrow, const float *bias, const float *res,
			 int K, int H, int W, int iv0, int iv1, int op)
{
	out_tl_t(out, m, ms, mrow, bias, res, K, H, W, iv0, iv1, op, NULL,
		 NULL);
}

NB_GP_CLONES
static void out_tl_stats(float *out, const float *restrict m, size_t ms,
			 size_t mrow, const float *bias, const float *res,
			 int K, int H, int W, int iv0, int iv1, int op,
			 const wg_fsum *fs)
{
	out_tl_t(out, m, ms, mrow, bias, res, K, H, W, iv0, iv1, op, NULL, fs);
}

NB_GP_CLONES
static void out_tl_sums(float *out, const float *restrict m, size_t ms,
			size_t mrow, int K, int H, int W, int iv0, int iv1,
			int op, const wg_bsum *bs)
{
	out_tl_t(out, m, ms, mrow, NULL, NULL, K, H, W, iv0, iv1, op, bs, NULL);
}

#undef SHUF

/* ---- the products ------------------------------------------------------- */

/*
 * c (MR rows ldc apart x NV vectors) = (c if acc, else 0) + sum over i <
 * nred of a[m * ams + i * ais] (broadcast) times the NV vectors at b + i *
 * ldb. Inlined with MR, NV and AMS constants (AMS 0: ams as given), so
 * that the sums stay in registers and the MR broadcasts of a step address
 * off one pointer.
 */
static inline __attribute__((always_inline)) void
tile(float *restrict c, size_t ldc, const float *restrict a, size_t ams,
     size_t ais, const float *restrict b, size_t ldb, int nred, int acc,
     const int MR, const int NV, const size_t AMS)
{
	const size_t as = AMS ? AMS : ams;
	v16f s[16][4];
#pragma GCC unroll 16
	for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			s[m][v] = acc ? LD(c + m * ldc + v * 16) : (v16f){0};
	for (int i = 0; i < nred; i++) {
		v16f bv[4];
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			bv[v] = LD(b + v * 16);
#pragma GCC unroll 16
		for (int m = 0; m < MR; m++) {
			const float am = a[m * as];
#pragma GCC unroll 4
			for (int v = 0; v < NV; v++)
				s[m][v] += am * bv[v];
		}
		a += ais;
		b += ldb;
	}
#pragma GCC unroll 16
	for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			ST(c + m * ldc + v * 16, s[m][v]);
}

/*
 * Rows m0.. of a block of NV vectors: whole tiles of TM rows (16 for one
 * vector, 8 for two or three, 6 for four: 24 sums and 10 loads per 24
 * multiply-adds, where 4 rows took 8 loads per 16), the rest in tiles of
 * 8, 4, 2 and 1 rows (the products' row counts are mostly multiples of
 * 16).
 */
static inline __attribute__((always_inline)) void
rows_nv(float *c, size_t ldc, const float *a, size_t ams, size_t ais,
	const float *b, size_t ldb, int M, int nred, int acc, const int NV,
	const size_t AMS)
{
	const int TM = NV == 1 ? 16 : NV == 4 ? 6 : 8;
	const size_t as = AMS ? AMS : ams;
	int m = 0;
	for (; m + TM <= M; m += TM)
		tile(c + (size_t)m * ldc, ldc, a + m * as, ams, ais, b, ldb,
		     nred, acc, TM, NV, AMS);
	if (TM > 8 && m + 8 <= M) {
		tile(c + (size_t)m * ldc, ldc, a + m * as, ams, ais, b, ldb,
		     nred, acc, 8, NV, AMS);
		m += 8;
	}
	if (TM > 4 && m + 4 <= M) {
		tile(c + (size_t)m * ldc, ldc, a + m * as, ams, ais, b, ldb,
		     nred, acc, 4, NV, AMS);
		m += 4;
	}
	if (m + 2 <= M) {
		tile(c + (size_t)m * ldc, ldc, a + m * as, ams, ais, b, ldb,
		     nred, acc, 2, NV, AMS);
		m += 2;
	}
	if (m < M)
		tile(c + (size_t)m * ldc, ldc, a + m * as, ams, ais, b, ldb,
		     nred, acc, 1, NV, AMS);
}

/*
 * c (M x 16 nvec, rows ldc apart) = (c if acc) + A B, A (M x nred) with
 * element (m, i) at a[m * ams + i * ais], B (nred x 16 nvec, rows ldb
 * apart); columns in blocks of up to four vectors. Every element sums over
 * i in order. One copy per AMS (row strides the products use).
 */
#define GEMM_AMS(name, AMS)                                                    \
	NB_GP_CLONES                                                           \
	static void name(float *c, size_t ldc, const float *a, size_t ams,     \
			 size_t ais, const float *b, size_t ldb, int M,        \
			 int nvec, int nred, int acc)                          \
	{                                                                      \
		int v0 = 0;                                                    \
		for (; v0 + 4 <= nvec; v0 += 4)                                \
			rows_nv(c + v0 * 16, ldc, a, ams, ais, b + v0 * 16,    \
				ldb, M, nred, acc, 4, AMS);                    \
		if (nvec - v0 == 3)                                            \
			rows_nv(c + v0 * 16, ldc, a, ams, ais, b + v0 * 16,    \
				ldb, M, nred, acc, 3, AMS);                    \
		else if (nvec - v0 == 2)                                       \
			rows_nv(c + v0 * 16, ldc, a, ams, ais, b + v0 * 16,    \
				ldb, M, nred, acc, 2, AMS);                    \
		else if (nvec - v0 == 1)                                       \
			rows_nv(c + v0 * 16, ldc, a, ams, ais, b + v0 * 16,    \
				ldb, M, nred, acc, 1, AMS);                    \
	}
GEMM_AMS(gemm_a1, 1)
GEMM_AMS(gemm_a16, 16)
GEMM_AMS(gemm_a32, 32)
GEMM_AMS(gemm_a64, 64)
GEMM_AMS(gemm_a128, 128)
GEMM_AMS(gemm_a256, 256)
GEMM_AMS(gemm_a512, 512)
GEMM_AMS(gemm_any, 0)
#undef GEMM_AMS

static void gemm(float *c, size_t ldc, const float *a, size_t ams, size_t ais,
		 const float *b, size_t ldb, int M, int nvec, int nred, int acc)
{
	typedef void (*gemm_fn)(float *, size_t, const float *, size_t, size_t,
				const float *, size_t, int, int, int, int);
	gemm_fn f = gemm_any;
	switch (ams) {
	case 1:
		f = gemm_a1;
		break;
	case 16:
		f = gemm_a16;
		break;
	case 32:
		f = gemm_a32;
		break;
	case 64:
		f = gemm_a64;
		break;
	case 128:
		f = gemm_a128;
		break;
	case 256:
		f = gemm_a256;
		break;
	case 512:
		f = gemm_a512;
		break;
	default:
		break;
	}
	f(c, ldc, a, ams, ais, b, ldb, M, nvec, nred, acc);
}

/*
 * The weight gradient's products with the tiles on the lanes run only
 * where the tiles-on-lanes path does, on AVX-512; a generic build compiles
 * them for x86-64-v4 alone (LANE_FN), so that they can name the broadcast
 * below (a 4-float vector shuffled out to 16 went through the stack with
 * GCC 12, in the AVX-512 clone too: the whole step 2x slower).
 */
#if defined(__AVX512F__)
#define LANE_FN
#define LANE_AVX512 1
#elif NB_GP_RUNTIME_CHECK
#define LANE_FN __attribute__((target("arch=x86-64-v4")))
#define LANE_AVX512 1
#else
#define LANE_FN
#define LANE_AVX512 0
#endif

/* p[0..3] on each of the four 4-lane groups: one load (vbroadcastf32x4) */
static inline __attribute__((always_inline)) LANE_FN v16f bcast4(const float *p)
{
#if LANE_AVX512
	return (v16f)_mm512_broadcast_f32x4(_mm_loadu_ps(p));
#else
	typedef float v4f_u
	    __attribute__((vector_size(16), aligned(4), may_alias));
	const v4f_u t = *(const v4f_u *)p;
	return __builtin_shufflevector(t, t, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
				       0, 1, 2, 3);
#endif
}

/*
 * The weight gradient's products with the tiles on the lanes, for one
 * plane: du (Cp rows of Kp) += V Z^T, V's row c (C of them) row floats
 * from v (tiles on the lanes), Z from z (z_tl's quads, nq vectors a row,
 * rows zq floats apart). A tile of MR rows c and 16 columns k keeps four
 * vectors per c in registers, lanes (k, tile % 4): each step loads four
 * tiles of V's row once, broadcast to the four 4-lane groups, and one
 * vector per channel quad (MR + 4 loads per 4 MR multiply-adds, where the
 * channels on the lanes took a broadcast per multiply-add). At the end
 * each k's four lanes are added, (l0 + l2) + (l1 + l3), into du.
 */
static inline __attribute__((always_inline)) LANE_FN void
lane_tile(float *restrict du, int Kp, const float *restrict v, size_t row,
	  const float *restrict z, size_t zq, int nq, const int MR)
{
	v16f s[6][4];
#pragma GCC unroll 6
	for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
		for (int q = 0; q < 4; q++)
			s[m][q] = (v16f){0};
	for (int j = 0; j < nq; j++) {
		v16f zz[4];
#pragma GCC unroll 4
		for (int q = 0; q < 4; q++)
			zz[q] = LD(z + q * zq + (size_t)j * 16);
#pragma GCC unroll 6
		for (int m = 0; m < MR; m++) {
			const v16f b = bcast4(v + m * row + 4 * j);
#pragma GCC unroll 4
			for (int q = 0; q < 4; q++)
				s[m][q] += b * zz[q];
		}
	}
#pragma GCC unroll 6
	for (int m = 0; m < MR; m++) {
		/* lane 4 r + q of e: k 4 q + r's sum; then k on lane k */
		const v16f *A = s[m];
		const v16f c01 =
			       __builtin_shufflevector(A[0], A[1], 0, 16, 1, 17,
						       4, 20, 5, 21, 8, 24, 9,
						       25, 12, 28, 13, 29) +
			       __builtin_shufflevector(A[0], A[1], 2, 18, 3, 19,
						       6, 22, 7, 23, 10, 26, 11,
						       27, 14, 30, 15, 31),
			   c23 =
			       __builtin_shufflevector(A[2], A[3], 0, 16, 1, 17,
						       4, 20, 5, 21, 8, 24, 9,
						       25, 12, 28, 13, 29) +
			       __builtin_shufflevector(A[2], A[3], 2, 18, 3, 19,
						       6, 22, 7, 23, 10, 26, 11,
						       27, 14, 30, 15, 31);
		const v16f e =
		    __builtin_shufflevector(c01, c23, 0, 1, 16, 17, 4, 5, 20,
					    21, 8, 9, 24, 25, 12, 13, 28, 29) +
		    __builtin_shufflevector(c01, c23, 2, 3, 18, 19, 6, 7, 22,
					    23, 10, 11, 26, 27, 14, 15, 30, 31);
		float *d = du + (size_t)m * Kp;
		ST(d, LD(d) + __builtin_shufflevector(e, e, 0, 4, 8, 12, 1, 5,
						      9, 13, 2, 6, 10, 14, 3, 7,
						      11, 15));
	}
}

/* lane_tile over the plane: rows in tiles of 6 (the rest 4 or 2: C is
 * a multiple of 16), columns in blocks of 16 */
LANE_FN static void lane_prod(float *du, const float *v, size_t row,
			      const float *z, size_t zq, int C, int Kp, int nq)
{
	for (int k0 = 0; k0 < Kp; k0 += 16) {
		const float *zk = z + (size_t)(k0 / 4) * zq;
		int c = 0;
		for (; c + 6 <= C; c += 6)
			lane_tile(du + (size_t)c * Kp + k0, Kp, v + c * row,
				  row, zk, zq, nq, 6);
		if (c + 4 <= C) {
			lane_tile(du + (size_t)c * Kp + k0, Kp, v + c * row,
				  row, zk, zq, nq, 4);
			c += 4;
		}
		if (c + 2 <= C) {
			lane_tile(du + (size_t)c * Kp + k0, Kp, v + c * row,
				  row, zk, zq, nq, 2);
			c += 2;
		}
	}
}

/* ---- weights ------------------------------------------------------------ */

/* u (16) <- G g G^T for the 3x3 filter f (its taps reversed if flip) */
static void filter_tf(float *u, const float *f, int flip)
{
	float gg[3][3], t[4][3];
	for (int i = 0; i < 9; i++)
		gg[i / 3][i % 3] = f[flip ? 8 - i : i];
	for (int j = 0; j < 3; j++) {
		t[0][j] = gg[0][j];
		t[1][j] = (gg[0][j] + gg[1][j] + gg[2][j]) * 0.5f;
		t[2][j] = (gg[0][j] - gg[1][j] + gg[2][j]) * 0.5f;
		t[3][j] = gg[2][j];
	}
	for (int a = 0; a < 4; a++) {
		u[4 * a + 0] = t[a][0];
		u[4 * a + 1] = (t[a][0] + t[a][1] + t[a][2]) * 0.5f;
		u[4 * a + 2] = (t[a][0] - t[a][1] + t[a][2]) * 0.5f;
		u[4 * a + 3] = t[a][2];
	}
}

/*
 * u (16 planes of rows x lanes) <- G g G^T for each filter g = w[k][c]
 * (K, C, 3, 3): at row c, lane k (the forward; rows Cp, lanes Kp), or with
 * the taps reversed at row k, lane c (flip: the input gradient; rows Kp,
 * lanes Cp). Padding rows and lanes zero. In blocks of 16 x 16 filters
 * (each read once, 16 of them contiguous; each plane's block written as
 * whole rows), split over the threads (call inside a parallel region).
 */
static void weights_tf(float *u, const float *w, const wg_geom *g, int flip)
{
	const int rows = flip ? g->Kp : g->Cp, lanes = flip ? g->Cp : g->Kp;
	const size_t plane = (size_t)rows * lanes;
	const int nbl = lanes / 16, nblk = rows / 16 * nbl;
#pragma omp for schedule(static)
	for (int blk = 0; blk < nblk; blk++) {
		const int r0 = blk / nbl * 16, l0 = blk % nbl * 16;
		const int k0 = flip ? r0 : l0, c0 = flip ? l0 : r0;
		float loc[XI][16][16], uu[XI];
		for (int kk = 0; kk < 16; kk++)
			for (int cc = 0; cc < 16; cc++) {
				const int k = k0 + kk, c = c0 + cc;
				if (k < g->K && c < g->C)
					filter_tf(
					    uu, w + ((size_t)k * g->C + c) * 9,
					    flip);
				else
					memset(uu, 0, sizeof uu);
				for (int x = 0; x < XI; x++)
					loc[x][flip ? kk : cc][flip ? cc : kk] =
					    uu[x];
			}
		for (int x = 0; x < XI; x++)
			for (int i = 0; i < 16; i++)
				memcpy(u + x * plane +
					   (size_t)(r0 + i) * lanes + l0,
				       loc[x][i], sizeof loc[x][i]);
	}
}

/* tile rows per block on the lanes: V and M of a block 16 x 3 x 16 tiles
 * x up to 32 channels, products in tiles of 8 x 3 vectors (preresnet20
 * trained 2.8 % faster than with 2 rows; 4 rows: the same as 3); a last
 * block of one row joins the one before (4 rows, tiles of 6 x 4 vectors:
 * +1 %), so the planes have room for TL_ROWS + 1 */
#define TL_ROWS 3

/*
 * Floats of a block's V and M on the lanes, for Cin and Cout channels: 17
 * planes of the larger, V's plane xi in plane xi + 1 and M's in plane xi.
 * The product of plane xi reads V's and writes M's over V's plane xi - 1,
 * which the product before it has read: about half the footprint of two
 * sets of 16 planes (16 channels, 3 tile rows: 52 KB instead of 98 KB), so
 * that with U the block stays nearer the L1 cache. Rows have room for
 * TL_ROWS + 1 vectors (tl_image's last block).
 */
static size_t tl_floats(int Cin, int Cout)
{
	return pad16((XI + 1) *
		     plane_floats(Cin > Cout ? Cin : Cout, (TL_ROWS + 1) * 16));
}

/*
 * out (Cout x H x 32) op= the convolution of one image x (Cin x H x 32)
 * (+ res, as out, if not NULL) with tiles on the lanes: uw the
 * transformed weights (16 planes of Cp x Kp), element (o, i) of U^T at
 * uw[i * ais + o]; vm tl_floats(Cin, Cout) floats.
 * bs, fs (or NULL): see out_tl_t; first: only the first block of tile
 * rows (out's first rows).
 */
static void tl_image(float *out, const float *x, const nb_conv_pre *pre,
		     const float *uw, size_t ais, const float *bias,
		     const float *res, int Cin, int Cout, const wg_geom *g,
		     float *vm, int op, const wg_bsum *bs, const wg_fsum *fs,
		     int first)
{
	const size_t vrow = (TL_ROWS + 1) * 16,
		     vs = plane_floats(Cin > Cout ? Cin : Cout, vrow), ms = vs;
	float *m = vm, *v = vm + vs;
	const size_t uplane = (size_t)g->Cp * g->Kp;
	/* vectors of 16 tiles: one tile row each (32 wide) or two; with
	 * first, only the first block's */
	const int nall = g->W == 16 ? (g->th + 1) / 2 : g->th;
	const int nvec = first && nall > TL_ROWS ? TL_ROWS : nall;
	for (int iv0 = 0; iv0 < nvec;) {
		/* a last block of one vector joins the one before (its
		 * products' tiles are the slowest) */
		const int iv1 =
		    nvec - iv0 <= TL_ROWS + 1 ? nvec : iv0 + TL_ROWS;
		in_tl(v, vs, vrow, x, Cin, g->H, g->W, iv0, iv1, pre);
		for (int xi = 0; xi < XI; xi++)
			gemm(m + xi * ms, vrow, uw + xi * uplane, 1, ais,
			     v + xi * vs, vrow, Cout, iv1 - iv0, Cin, 0);
		if (bs)
			out_tl_sums(out, m, ms, vrow, Cout, g->H, g->W, iv0,
				    iv1, op, bs);
		else if (fs)
			out_tl_stats(out, m, ms, vrow, bias, res, Cout, g->H,
				     g->W, iv0, iv1, op, fs);
		else
			out_tl_plain(out, m, ms, vrow, bias, res, Cout, g->H,
				     g->W, iv0, iv1, op);
		iv0 = iv1;
	}
}

/* a slice's sums from their lanes: q[j * C + c] = the lanes of sum j of
 * channel c added (acc: per channel, ns sums of NB_BN_LANES lanes) */
static void slice_out(double *q, const double *acc, int C, int ns)
{
	for (int c = 0; c < C; c++)
		for (int j = 0; j < ns; j++)
			q[(size_t)j * C + c] = nb_bn_lanes_sum(
			    acc + ((size_t)c * ns + j) * NB_BN_LANES);
}

/* ---- forward ------------------------------------------------------------ */

int nb_wino_forward(float *out, const float *in, const float *w, const float *b,
		    const nb_conv2d_shape *s, nb_workspace *ws, int act,
		    int lanes, const nb_conv_pre *pre, const nb_conv_post *post)
{
	const float *res = post ? post->res : NULL;
	if (!nb_wino_fits(s) || (post && act != NB_ACT_NONE))
		return NB_EINVAL;
	const wg_geom g = geom(s, lanes);
	/* the output's BatchNorm statistics (with the tiles on the lanes) */
	double *stats = post && post->stats && g.tl ? post->stats : NULL;
	const int Cp = g.Cp, Kp = g.Kp;
	const int op = act == NB_ACT_RELU    ? NB_GP_PUT_RELU
		       : act == NB_ACT_RELU6 ? NB_GP_PUT_RELU6
					     : NB_GP_PUT_COPY;
	const size_t vs = plane_floats(g.rb, Cp), ms = plane_floats(g.rb, Kp);
	/* shared: U (16 x Cp x Kp), the bias (Kp); per thread: the unit's
	 * bordered inputs, tr (rows not whole vectors), a block's V and M,
	 * the unit's output positions, an image's transpose */
	const size_t u_n = pad16((size_t)XI * Cp * Kp), bias_n = pad16(Kp);
	const size_t xb1 = pad16((size_t)g.Hb * g.Wb * Cp);
	const size_t ob1 = pad16((size_t)4 * g.T * Kp);
	const size_t xb_n = xb1 * g.nimg;
	const size_t tr_n = g.W % 16 ? pad16(g.HW * (Cp > Kp ? Cp : Kp)) : 0;
	const size_t v_n = pad16(XI * vs), m_n = pad16(XI * ms);
	const size_t ob_n = ob1 * g.nimg;
	/* with stats: image 0's first rows, the first elements, the lanes */
	const size_t st_n = stats ? pad16(g.K * g.HW) + pad16((size_t)2 * g.K) +
					pad16((size_t)4 * NB_BN_LANES * g.K)
				  : 0;
	const size_t slice =
	    g.tl ? tl_floats(g.C, g.K) + st_n : xb_n + tr_n + v_n + m_n + ob_n;
	const int T = nb_workspace_threads();
	float *base = nb_workspace_reserve(ws, u_n + bias_n + slice * T);
	if (!base)
		return NB_ENOMEM;
	float *u = base, *bias = b ? base + u_n : NULL;
	if (bias) {
		memset(bias, 0, sizeof(float) * Kp);
		memcpy(bias, b, sizeof(float) * g.K);
	}
#pragma omp parallel num_threads(T)
	{
		float *xb = base + u_n + bias_n + slice * omp_get_thread_num();
		float *tr = tr_n ? xb + xb_n : NULL;
		float *v = xb + xb_n + tr_n, *m = v + v_n, *ob = m + m_n;
		if (!g.tl) /* the borders stay 0 */
			memset(xb, 0, sizeof(float) * xb_n);
		weights_tf(u, w, &g, 0); /* ends in a barrier */
		if (g.tl && !stats) {
#pragma omp for schedule(static)
			for (int n = 0; n < g.N; n++)
				tl_image(
				    out + (size_t)n * g.K * g.HW,
				    in + (size_t)n * g.C * g.HW, pre, u, Kp, b,
				    res ? res + (size_t)n * g.K * g.HW : NULL,
				    g.C, g.K, &g, xb, op, NULL, NULL, 0);
		}
		if (stats) {
			float *first = xb + tl_floats(g.C, g.K);
			double *K = (double *)(first + pad16(g.K * g.HW));
			wg_fsum fs = {.K = K,
				      .acc =
					  (double *)(first + pad16(g.K * g.HW) +
						     pad16((size_t)2 * g.K))};
			/* K: every thread writes image 0's first rows as the
			 * loop below does, for their first elements */
			tl_image(first, in, pre, u, Kp, b, res, g.C, g.K, &g,
				 xb, op, NULL, NULL, 1);
			for (int k = 0; k < g.K; k++)
				K[k] = first[(size_t)k * g.HW];
			/* slice by slice, each slice's images in order */
			const size_t an = (size_t)2 * NB_BN_LANES * g.K;
#pragma omp for schedule(static)
			for (int sl = 0; sl < NB_BN_SLICES; sl++) {
				memset(fs.acc, 0, sizeof(double) * an);
				const int n1 = nb_bn_slice_begin(g.N, sl + 1);
				for (int n = nb_bn_slice_begin(g.N, sl); n < n1;
				     n++)
					tl_image(
					    out + (size_t)n * g.K * g.HW,
					    in + (size_t)n * g.C * g.HW, pre, u,
					    Kp, b,
					    res ? res + (size_t)n * g.K * g.HW
						: NULL,
					    g.C, g.K, &g, xb, op, NULL, &fs, 0);
				slice_out(stats + (size_t)sl * 2 * g.K, fs.acc,
					  g.K, 2);
			}
		}
#pragma omp for schedule(static)
		for (int un = 0; un < (g.tl ? 0 : g.NU); un++) {
			const int n0 = un * g.nimg,
				  nb = g.N - n0 < g.nimg ? g.N - n0 : g.nimg;
			for (int i = 0; i < nb; i++)
				place_in(xb + xb1 * i, tr,
					 in + (size_t)(n0 + i) * g.C * g.HW,
					 g.C, Cp, &g, pre);
			for (int r0 = 0; r0 < nb * g.T; r0 += g.rb) {
				const int r1 =
				    r0 + g.rb < nb * g.T ? r0 + g.rb : nb * g.T;
				in_tf(v, vs, xb, xb1, Cp, g.Wb, g.T, g.tw, r0,
				      r1);
				for (int x = 0; x < XI; x++)
					gemm(m + x * ms, Kp, v + x * vs, Cp, 1,
					     u + (size_t)x * Cp * Kp, Kp,
					     r1 - r0, Kp / 16, Cp, 0);
				out_tf(ob, ob1, m, ms, bias, Kp, g.T, g.tw, r0,
				       r1);
			}
			for (int i = 0; i < nb; i++) {
				const size_t at = (size_t)(n0 + i) * g.K * g.HW;
				take_out(out + at, ob + ob1 * i, tr, g.K, Kp,
					 &g, op);
				/* while the image is in cache */
				for (size_t j = 0; res && j < g.K * g.HW; j++)
					out[at + j] += res[at + j];
			}
		}
	}
	return stats ? 1 : NB_OK;
}

/* ---- backward ----------------------------------------------------------- */

/* dw (3x3) += G^T d G, d the 4x4 block of transformed sums */
static void filter_grad(float *dw, const float d[4][4])
{
	float e[4][3];
	for (int a = 0; a < 4; a++) {
		const float h = (d[a][1] + d[a][2]) * 0.5f;
		e[a][0] = d[a][0] + h;
		e[a][1] = (d[a][1] - d[a][2]) * 0.5f;
		e[a][2] = h + d[a][3];
	}
	for (int j = 0; j < 3; j++) {
		const float h = (e[1][j] + e[2][j]) * 0.5f;
		dw[0 * 3 + j] += e[0][j] + h;
		dw[1 * 3 + j] += (e[1][j] - e[2][j]) * 0.5f;
		dw[2 * 3 + j] += h + e[3][j];
	}
}

/*
 * dw (K, C, 3, 3) += G^T dU G for every filter, dU (16 planes of Cp rows x
 * Kp lanes) the summed products: in blocks of 16 x 16 filters (each
 * plane's block read as whole rows, 16 filters of a k written one after
 * the other), split over the threads (call inside a parallel region).
 */
static void add_filter_grads(float *dw, const float *du, const wg_geom *g)
{
	const size_t plane = (size_t)g->Cp * g->Kp;
	const int nbk = g->Kp / 16, nblk = g->Cp / 16 * nbk;
#pragma omp for schedule(static)
	for (int blk = 0; blk < nblk; blk++) {
		const int c0 = blk / nbk * 16, k0 = blk % nbk * 16;
		float loc[XI][16][16], d[4][4];
		for (int x = 0; x < XI; x++)
			for (int i = 0; i < 16; i++)
				memcpy(loc[x][i],
				       du + x * plane +
					   (size_t)(c0 + i) * g->Kp + k0,
				       sizeof loc[x][i]);
		for (int kk = 0; kk < 16 && k0 + kk < g->K; kk++)
			for (int cc = 0; cc < 16 && c0 + cc < g->C; cc++) {
				for (int x = 0; x < XI; x++)
					d[x / 4][x % 4] = loc[x][cc][kk];
				filter_grad(
				    dw + ((size_t)(k0 + kk) * g->C + c0 + cc) *
					     9,
				    d);
			}
	}
}

/* iterations [*lo, *hi) of n for thread t of nt, as OpenMP's
 * schedule(static) without a chunk size gives them in libgomp: the first
 * n % nt threads one more */
static void share(int n, int nt, int t, int *lo, int *hi)
{
	const int q = n / nt, r = n % nt;
	*lo = t * q + (t < r ? t : r);
	*hi = *lo + q + (t < r);
}

/* whether each of nt threads gets the same images from the slices (for
 * the BatchNorm's sums) as from the units (the weight gradient), and
 * every slice is whole units */
static int units_match(const wg_geom *g, int nt)
{
	for (int t = 0; t < nt; t++) {
		int u0, u1, s0, s1;
		share(g->NU, nt, t, &u0, &u1);
		share(NB_BN_SLICES, nt, t, &s0, &s1);
		const int a = nb_bn_slice_begin(g->N, s0),
			  b = nb_bn_slice_begin(g->N, s1);
		const int ua = u0 * g->nimg,
			  ub = u1 * g->nimg < g->N ? u1 * g->nimg : g->N;
		if (a != ua || b != ub)
			return 0;
	}
	for (int sl = 0; sl <= NB_BN_SLICES; sl++) {
		const int n = nb_bn_slice_begin(g->N, sl);
		if (n % g->nimg && n != g->N)
			return 0;
	}
	return 1;
}

/* one thread's share of the backward's loop over units: its buffers */
typedef struct wg_unit_ctx {
	const wg_geom *g;
	const float *in, *dout;
	float *din; /* din with the channels on the lanes, or NULL */
	const nb_conv_pre *pre;
	const float *uf;
	float *xb, *gb, *tr, *vx, *vg, *z, *m, *ob, *du;
	size_t xb1, gb1, ob1, xs, gs;
	int store;
	/* the weight gradient with the tiles on the lanes (g->tl): tile
	 * vectors per image, floats of a unit's tiles (V's rows) */
	int nall;
	size_t trow;
} wg_unit_ctx;

/* unit un's weight gradient with the tiles on the lanes: the unit's V and
 * Z, image after image, then their products into du */
static void wg_unit_tl(const wg_unit_ctx *u, int un)
{
	const wg_geom *g = u->g;
	const int n0 = un * g->nimg,
		  nb = g->N - n0 < g->nimg ? g->N - n0 : g->nimg;
	for (int i = 0; i < nb; i++) {
		const size_t n = (size_t)(n0 + i),
			     at = (size_t)i * u->nall * 16;
		in_tl(u->vx + at, u->xs, u->trow, u->in + n * g->C * g->HW,
		      g->C, g->H, g->W, 0, u->nall, u->pre);
		z_tl(u->z + 4 * at, u->gs, 4 * u->trow,
		     u->dout + n * g->K * g->HW, g->K, g->H, g->W, 0, u->nall);
	}
	for (int x = 0; x < XI; x++)
		lane_prod(u->du + (size_t)x * g->Cp * g->Kp, u->vx + x * u->xs,
			  u->trow, u->z + x * u->gs, 4 * u->trow, g->C, g->Kp,
			  nb * u->nall * 4);
}

/* unit un of the backward: dw's partial du (if du) and din (if din); with
 * the tiles on the lanes (only dw then), wg_unit_tl */
static void wg_unit(const wg_unit_ctx *u, int un)
{
	const wg_geom *g = u->g;
	if (g->tl) {
		wg_unit_tl(u, un);
		return;
	}
	const int Cp = g->Cp, Kp = g->Kp;
	const int n0 = un * g->nimg,
		  nb = g->N - n0 < g->nimg ? g->N - n0 : g->nimg;
	for (int i = 0; i < nb; i++) {
		const size_t n = (size_t)(n0 + i);
		if (u->du)
			place_in(u->xb + u->xb1 * i, u->tr,
				 u->in + n * g->C * g->HW, g->C, Cp, g, u->pre);
		place_in(u->gb + u->gb1 * i, u->tr, u->dout + n * g->K * g->HW,
			 g->K, Kp, g, NULL);
	}
	for (int r0 = 0; r0 < nb * g->T; r0 += g->rb) {
		const int r1 = r0 + g->rb < nb * g->T ? r0 + g->rb : nb * g->T;
		if (u->du) {
			in_tf(u->vx, u->xs, u->xb, u->xb1, Cp, g->Wb, g->T,
			      g->tw, r0, r1);
			z_tf(u->z, u->gs, u->gb + ((size_t)g->Wb + 1) * Kp,
			     u->gb1, Kp, g->Wb, g->T, g->tw, r0, r1);
			for (int x = 0; x < XI; x++)
				gemm(u->du + (size_t)x * Cp * Kp, Kp,
				     u->vx + x * u->xs, 1, Cp, u->z + x * u->gs,
				     Kp, Cp, Kp / 16, r1 - r0, 1);
		}
		if (!u->din)
			continue;
		in_tf(u->vg, u->gs, u->gb, u->gb1, Kp, g->Wb, g->T, g->tw, r0,
		      r1);
		for (int x = 0; x < XI; x++)
			gemm(u->m + x * u->xs, Cp, u->vg + x * u->gs, Kp, 1,
			     u->uf + (size_t)x * Kp * Cp, Cp, r1 - r0, Cp / 16,
			     Kp, 0);
		out_tf(u->ob, u->ob1, u->m, u->xs, NULL, Cp, g->T, g->tw, r0,
		       r1);
	}
	for (int i = 0; u->din && i < nb; i++)
		take_out(u->din + (size_t)(n0 + i) * g->C * g->HW,
			 u->ob + u->ob1 * i, u->tr, g->C, Cp, g,
			 u->store ? NB_GP_PUT_STORE : NB_GP_PUT_ADD);
}

int nb_wino_backward(float *din, float *dw, const float *dout, const float *in,
		     const float *w, const nb_conv2d_shape *s, nb_workspace *ws,
		     int store, int lanes, const nb_conv_pre *pre)
{
	if (!din && !dw)
		return NB_OK;
	if (!nb_wino_fits(s))
		return NB_EINVAL;
	const wg_geom g = geom(s, lanes);
	const int Cp = g.Cp, Kp = g.Kp;
	/* the input gradient with tiles on the lanes (no dout or din
	 * transposed: a loop of its own), or with the weight gradient */
	const int tl_d = din && g.tl;
	float *dcl = tl_d ? NULL : din;
	/* the BatchNorm's sums taken with din (on the tiles' lanes only) */
	const int sums = tl_d && pre && pre->sums && pre->mean;
	/* the weight gradient with the tiles on the lanes: a unit's tile
	 * vectors in each row of V and Z, the lanes of the sums */
	const int wl = dw && g.tl;
	const int nall = g.W == 16 ? (g.th + 1) / 2 : g.th;
	const size_t trow = (size_t)g.nimg * nall * 16;
	const size_t xs = wl ? plane_floats(Cp, trow) : plane_floats(g.rb, Cp),
		     gs = wl ? plane_floats(Kp, trow) : plane_floats(g.rb, Kp);
	/* shared: the flipped U (din). Per thread: the unit's bordered
	 * inputs (dw) and output gradients, tr, a block's V of the input
	 * (dw), V of the output gradient (din), Z (dw) and M (din), the
	 * unit's din positions and an image's transpose (din), then the
	 * partial dU (dw) */
	const size_t uf_n = din ? pad16((size_t)XI * Kp * Cp) : 0;
	const size_t xb1 = pad16((size_t)g.Hb * g.Wb * Cp);
	const size_t gb1 = pad16((size_t)g.Hb * g.Wb * Kp);
	const size_t ob1 = pad16((size_t)4 * g.T * Cp);
	const size_t xb_n = dw && !wl ? xb1 * g.nimg : 0;
	/* (the channels-on-lanes loop runs only for dw or a din not on the
	 * tiles' lanes) */
	const size_t gb_n = (dw && !wl) || dcl ? gb1 * g.nimg : 0;
	const size_t tr_n = g.W % 16 ? pad16(g.HW * (Cp > Kp ? Cp : Kp)) : 0;
	const size_t vx_n = dw ? pad16(XI * xs) : 0;
	const size_t vg_n = dcl ? pad16(XI * gs) : 0;
	const size_t z_n = dw ? pad16(XI * gs) : 0;
	const size_t m_n = dcl ? pad16(XI * xs) : 0;
	const size_t ob_n = dcl ? ob1 * g.nimg : 0;
	const size_t tl_n = tl_d ? tl_floats(Kp, Cp) : 0;
	const size_t acc_n =
	    sums ? pad16((size_t)2 * 3 * NB_BN_LANES * g.C) : 0;
	const size_t du_n = dw ? pad16((size_t)XI * Cp * Kp) : 0;
	const size_t work =
	    xb_n + gb_n + tr_n + vx_n + vg_n + z_n + m_n + ob_n + tl_n + acc_n;
	const size_t slice = work + du_n;
	const int T = nb_workspace_threads();
	float *base = nb_workspace_reserve(ws, uf_n + slice * T);
	if (!base)
		return NB_ENOMEM;
	float *uf = base;
	int used = 1;
#pragma omp parallel num_threads(T)
	{
		float *at = base + uf_n + slice * omp_get_thread_num();
		wg_unit_ctx u = {.g = &g,
				 .in = in,
				 .dout = dout,
				 .din = dcl,
				 .pre = pre,
				 .uf = uf,
				 .xb = xb_n ? at : NULL,
				 .gb = at + xb_n,
				 .xb1 = xb1,
				 .gb1 = gb1,
				 .ob1 = ob1,
				 .xs = xs,
				 .gs = gs,
				 .store = store,
				 .nall = nall,
				 .trow = trow};
		u.tr = tr_n ? u.gb + gb_n : NULL;
		u.vx = u.gb + gb_n + tr_n;
		u.vg = u.vx + vx_n;
		u.z = u.vg + vg_n;
		u.m = u.z + z_n;
		u.ob = u.m + m_n;
		float *tv = u.ob + ob_n;
		u.du = dw ? at + work : NULL;
		if (u.xb)
			memset(u.xb, 0, sizeof(float) * xb_n);
		if (gb_n)
			memset(u.gb, 0, sizeof(float) * gb_n);
		if (u.du)
			memset(u.du, 0, sizeof(float) * du_n);
		if (din)
			weights_tf(uf, w, &g, 1); /* ends in a barrier */
#pragma omp single
		used = omp_get_num_threads();
		const int nt = omp_get_num_threads(), t = omp_get_thread_num();
		const int dop = store ? NB_GP_PUT_STORE : NB_GP_PUT_ADD;
		/* this thread's units and slices, as schedule(static) */
		int u0, u1, s0, s1;
		share(dw || dcl ? g.NU : 0, nt, t, &u0, &u1);
		share(sums ? NB_BN_SLICES : 0, nt, t, &s0, &s1);
		/* din with the sums and dw image by image in one loop, while
		 * each image's dout and input are in cache, where the two
		 * loops below would give this thread the same images (always
		 * with one thread): the same bits */
		const int one = sums && dw && units_match(&g, nt);
		if (tl_d && !sums) {
#pragma omp for schedule(static) nowait
			for (int n = 0; n < g.N; n++)
				tl_image(din + (size_t)n * g.C * g.HW,
					 dout + (size_t)n * g.K * g.HW, NULL,
					 uf, Cp, NULL, NULL, g.K, g.C, &g, tv,
					 dop, NULL, NULL, 0);
		}
		if (sums) {
			/* slice by slice, each slice's images in order */
			wg_bsum bs = {.aff = pre->affine,
				      .mean = pre->mean,
				      .act = pre->act,
				      .acc = (double *)(tv + tl_n)};
			const size_t an = (size_t)3 * NB_BN_LANES * g.C;
			for (int sl = s0; sl < s1; sl++) {
				memset(bs.acc, 0, sizeof(double) * an);
				const int n1 = nb_bn_slice_begin(g.N, sl + 1);
				for (int n = nb_bn_slice_begin(g.N, sl); n < n1;
				     n++) {
					bs.x = in + (size_t)n * g.C * g.HW;
					tl_image(din + (size_t)n * g.C * g.HW,
						 dout + (size_t)n * g.K * g.HW,
						 NULL, uf, Cp, NULL, NULL, g.K,
						 g.C, &g, tv, dop, &bs, NULL,
						 0);
					/* the unit this image ends */
					if (one && ((n + 1) % g.nimg == 0 ||
						    n + 1 == g.N))
						wg_unit(&u, n / g.nimg);
				}
				slice_out(pre->sums + (size_t)sl * 3 * g.C,
					  bs.acc, g.C, 3);
			}
		}
		for (int un = one ? 0 : u0; un < (one ? 0 : u1); un++)
			wg_unit(&u, un);
#pragma omp barrier
		/* the partials in thread order, then G^T dU G */
		if (dw) {
			const size_t plane = (size_t)Cp * Kp;
			float *du0 = base + uf_n + work;
#pragma omp for schedule(static)
			for (size_t i = 0; i < XI * plane; i += 16)
				for (int t = 1; t < used; t++)
					*(v16f *)(du0 + i) += *(
					    const v16f *)(du0 + slice * t + i);
			add_filter_grads(dw, du0, &g);
		}
	}
	return sums;
}
