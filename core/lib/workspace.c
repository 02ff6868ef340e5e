/* workspace.c - the growable scratch buffer shared by the ops. */
#include <stdlib.h>

#include <omp.h>

#include "ops.h"

float *nb_workspace_reserve(nb_workspace *ws, size_t n)
{
	if (n <= ws->cap)
		return ws->buf;
	/* Grow geometrically so that shapes that creep up do not realloc
	 * every batch; 64-byte alignment for the vector units. */
	size_t cap = ws->cap ? ws->cap : 1024;
	while (cap < n)
		cap *= 2;
	float *buf = NULL;
	if (posix_memalign((void **)&buf, 64, cap * sizeof(float)) != 0)
		return NULL;
	free(ws->buf);
	ws->buf = buf;
	ws->cap = cap;
	return buf;
}

void nb_workspace_free(nb_workspace *ws)
{
	free(ws->buf);
	ws->buf = NULL;
	ws->cap = 0;
}

int nb_workspace_threads(void)
{
	return omp_in_parallel() ? 1 : omp_get_max_threads();
}
