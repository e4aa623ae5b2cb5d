// Test kernels for package runtime, with the artifact kernel ABI
//   void kernel(void **args, int64_t tid, int64_t nthreads, void *scratch)
// Sizes are fixed here and in the test's hand-built artifact. The tests compile
// this file with `cc -shared -fPIC -O2 -ffp-contract=off`.
#include <stdint.h>
#include <string.h>

#define NW 1000 // elements of w
#define NB 100  // elements of b and g
#define EROWS 16
#define EDIM 8
#define NTOK 6
#define NSLOTS 16

// range splits [0, n) into nthreads nearly equal parts; thread tid gets [*lo, *hi).
static void range(int64_t n, int64_t tid, int64_t nthreads, int64_t *lo, int64_t *hi) {
	int64_t chunk = (n + nthreads - 1) / nthreads;
	*lo = tid * chunk;
	*hi = *lo + chunk;
	if (*lo > n) *lo = n;
	if (*hi > n) *hi = n;
}

// scale_w: out = w * (1 - lr). args: w f32[NW], lr f32[], out f32[NW].
void scale_w(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	const float *w = args[0];
	float s = 1.0f - *(const float *)args[1];
	float *out = args[2];
	int64_t lo, hi;
	range(NW, tid, nthreads, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) out[i] = w[i] * s;
}

// axpy_b: b += lr * g, in place. args: b f32[NB], lr f32[], g f32[NB].
void axpy_b(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	float *b = args[0];
	float lr = *(const float *)args[1];
	const float *g = args[2];
	int64_t lo, hi;
	range(NB, tid, nthreads, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) b[i] = b[i] + lr * g[i];
}

// sum_loss: loss = sum(x) + sum(y), by thread 0 alone in a fixed order.
// args: x f32[NW], y f32[NB], loss f32[].
void sum_loss(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	if (tid != 0) return;
	const float *x = args[0], *y = args[1];
	double s = 0;
	for (int i = 0; i < NW; i++) s += x[i];
	for (int i = 0; i < NB; i++) s += y[i];
	*(float *)args[2] = (float)s;
}

// embed: out[t] = table[ids[t]] (NaN for an id out of range).
// args: table f32[EROWS,EDIM], ids i64[NTOK], out f32[NTOK,EDIM].
void embed(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	const float *table = args[0];
	const int64_t *ids = args[1];
	float *out = args[2];
	int64_t lo, hi;
	range(NTOK, tid, nthreads, &lo, &hi);
	for (int64_t t = lo; t < hi; t++) {
		int64_t id = ids[t];
		for (int d = 0; d < EDIM; d++)
			out[t * EDIM + d] = (id >= 0 && id < EROWS) ? table[id * EDIM + d] : __builtin_nanf("");
	}
}

// zero16: thread 0 clears an i64[NSLOTS].
void zero16(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	if (tid == 0) memset(args[0], 0, NSLOTS * sizeof(int64_t));
}

// tids: out[tid] = tid + 100 * nthreads. args: out i64[NSLOTS].
void tids(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	int64_t *out = args[0];
	if (tid < NSLOTS) out[tid] = tid + 100 * nthreads;
}

// scratch_addr: writes each thread's scratch address, after checking it is
// private: every thread fills its scratch with its tid and reads it back.
// args: out i64[NSLOTS], scratch bytes (i64[]), ok i64[NSLOTS].
void scratch_addr(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	int64_t *out = args[0];
	int64_t n = *(const int64_t *)args[1];
	int64_t *ok = args[2];
	unsigned char *s = scratch;
	memset(s, (int)(tid + 1), (size_t)n);
	int good = 1;
	for (int round = 0; round < 1000; round++)
		for (int64_t i = 0; i < n; i++)
			if (((volatile unsigned char *)s)[i] != (unsigned char)(tid + 1)) good = 0;
	if (tid < NSLOTS) {
		out[tid] = (int64_t)(intptr_t)scratch;
		ok[tid] = good;
	}
}

// double_w: y = 2 * w. args: w f32[NW], y f32[NW].
void double_w(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	const float *w = args[0];
	float *y = args[1];
	int64_t lo, hi;
	range(NW, tid, nthreads, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) y[i] = 2 * w[i];
}

// reverse: z[i] = y[NW-1-i], which reads the other threads' part of y, so it
// is right only if the barrier before it held. args: y f32[NW], z f32[NW].
void reverse(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	const float *y = args[0];
	float *z = args[1];
	int64_t lo, hi;
	range(NW, tid, nthreads, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) z[i] = y[NW - 1 - i];
}

// copy_w: out = in. args: in f32[NW], out f32[NW].
void copy_w(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	int64_t lo, hi;
	range(NW, tid, nthreads, &lo, &hi);
	memcpy((float *)args[1] + lo, (const float *)args[0] + lo, (size_t)(hi - lo) * sizeof(float));
}

// count_step: thread 0 adds 1 to a counter (i64[]): a cheap step for the
// overhead benchmark and for checking that every step runs once.
void count_step(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	if (tid == 0) *(int64_t *)args[0] += 1;
}

// nop does nothing and takes no arguments.
void nop(void **args, int64_t tid, int64_t nthreads, void *scratch) {}
