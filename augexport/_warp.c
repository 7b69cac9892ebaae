/* OpenCV's warpAffine(INTER_LINEAR | WARP_INVERSE_MAP) of a 3-channel uint8 image, same bytes.
 *
 * OpenCV splits the warp in two passes over each 128x32 block: one writes every output pixel's
 * integer source position and 1/32-pixel fraction to memory, the other reads them back, looks up
 * the 2-D weights in a table and blends, and every pixel whose 2x2 neighbourhood is not inside
 * the source takes a scalar path. Here one pass does both, 8 output pixels at a time (AVX2), and
 * the source is first copied into a frame of 2 border pixels each side, so that a clamped
 * position reads the same values OpenCV's border path computes: no pixel is special.
 *
 * The arithmetic is OpenCV's own: per column rint(m00*x*1024), per row rint((m01*y + m02)*1024)
 * + 16, their int32 sum >> 5 (1/32 pixel), the integer position >> 5 more, and the 4 neighbours
 * blended with weights (32-ax or ax)*(32-ay or ay), (sum + 512) >> 10. OpenCV's table holds the
 * same products times 32 and rounds (sum + 2^14) >> 15: the same result. The blend is separable
 * and exact in integers: a horizontal pass (u8 x s8 pairs, pmaddubsw) then a vertical one
 * (s16 pairs, pmaddwd).
 *
 * Border modes: 0 = BORDER_REPLICATE, 1 = BORDER_CONSTANT (value cval). A position is clamped to
 * [-2, size]; its two neighbours then lie in the frame, and for replicate the frame repeats the
 * edge (OpenCV clamps each neighbour to the edge: the same values), for constant it holds cval
 * (OpenCV takes cval for each neighbour outside, and cval itself where both are: the frame's
 * two columns or rows of cval blend to cval).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PAD 2

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_KERNEL 1
#else
#define HAVE_KERNEL 0
#endif

#if HAVE_KERNEL
/* OpenCV's saturate_cast<int>(double): round half to even; out of range (and NaN) gives INT_MIN,
 * as cvtsd2si does. */
static int cv_round(double v) {
    if (!(v > (double)INT_MIN - 0.5 && v < (double)INT_MAX + 0.5)) return INT_MIN;
    return (int)lrint(v);
}

/* The source in a frame of PAD pixels each side, by the border rule; 16 spare bytes at the end
 * for the kernel's 8-byte loads. */
static uint8_t *framed(const uint8_t *src, int h, int w, int border, const uint8_t *cval, long *step) {
    const long fw = (long)w + 2 * PAD, fstep = fw * 3;
    uint8_t *f = malloc((size_t)(fstep * (h + 2 * PAD) + 16));
    if (f == NULL) return NULL;
    for (int y = -PAD; y < h + PAD; y++) {
        uint8_t *row = f + (y + PAD) * fstep;
        int sy = y < 0 ? 0 : (y >= h ? h - 1 : y);
        int inside = y >= 0 && y < h;
        if (border == 0 || inside) {
            memcpy(row + PAD * 3, src + (long)sy * w * 3, (size_t)w * 3);
        } else {
            for (long x = PAD; x < PAD + w; x++) memcpy(row + x * 3, cval, 3);
        }
        const uint8_t *left = border == 0 ? row + PAD * 3 : cval;
        const uint8_t *right = border == 0 ? row + (PAD + w - 1) * 3 : cval;
        for (int x = 0; x < PAD; x++) {
            memcpy(row + x * 3, left, 3);
            memcpy(row + (PAD + w + x) * 3, right, 3);
        }
    }
    memset(f + fstep * (h + 2 * PAD), 0, 16);
    *step = fstep;
    return f;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* One output pixel from the frame (positions already >> 5: 1/32 pixel). */
static void pixel(const uint8_t *f, long fstep, int h, int w, int X, int Y, uint8_t *d) {
    int sx = clampi(X >> 5, -PAD, w), sy = clampi(Y >> 5, -PAD, h), ax = X & 31, ay = Y & 31;
    const uint8_t *s0 = f + (long)(sy + PAD) * fstep + (long)(sx + PAD) * 3, *s1 = s0 + fstep;
    int w00 = (32 - ax) * (32 - ay), w01 = ax * (32 - ay), w10 = (32 - ax) * ay, w11 = ax * ay;
    for (int k = 0; k < 3; k++)
        d[k] = (uint8_t)((s0[k] * w00 + s0[k + 3] * w01 + s1[k] * w10 + s1[k + 3] * w11 + 512) >> 10);
}

static __m128i WX[1024], WY[1024]; /* by ax | ay << 5: the byte pairs (32-ax, ax), the word pairs (32-ay, ay) */

static void init_tables(void) {
    for (int i = 0; i < 1024; i++) {
        int ax = i & 31, ay = i >> 5;
        int8_t b[16];
        int16_t s[8];
        for (int j = 0; j < 16; j += 2) { b[j] = (int8_t)(32 - ax); b[j + 1] = (int8_t)ax; }
        for (int j = 0; j < 8; j += 2) { s[j] = (int16_t)(32 - ay); s[j + 1] = (int16_t)ay; }
        memcpy(&WX[i], b, 16);
        memcpy(&WY[i], s, 16);
    }
}

__attribute__((target("avx2")))
static __m256i blend2(const uint8_t *a, const uint8_t *b, long fstep, int ta, int tb, __m256i shuf, __m256i half) {
    __m256i r = _mm256_set_epi64x(*(const int64_t *)(b + fstep), *(const int64_t *)b,
                                  *(const int64_t *)(a + fstep), *(const int64_t *)a);
    r = _mm256_shuffle_epi8(r, shuf); /* per pixel: r0 r1 R0 R1 g0 g1 G0 G1 b0 b1 B0 B1 (row 0, ROW 1) */
    __m256i hsum = _mm256_maddubs_epi16(r, _mm256_loadu2_m128i(&WX[tb], &WX[ta]));
    __m256i vsum = _mm256_madd_epi16(hsum, _mm256_loadu2_m128i(&WY[tb], &WY[ta]));
    return _mm256_srai_epi32(_mm256_add_epi32(vsum, half), 10);
}

__attribute__((target("avx2")))
static void warp_row(const uint8_t *f, long fstep, int h, int w, uint8_t *d, int dw, int X0, int Y0,
                     const int *adelta, const int *bdelta) {
    const __m256i shuf = _mm256_setr_epi8(0, 3, 8, 11, 1, 4, 9, 12, 2, 5, 10, 13, -1, -1, -1, -1,
                                          0, 3, 8, 11, 1, 4, 9, 12, 2, 5, 10, 13, -1, -1, -1, -1);
    const __m256i pack = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
                                          0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), half = _mm256_set1_epi32(512);
    const __m256i m31 = _mm256_set1_epi32(31), lo = _mm256_set1_epi32(-PAD);
    const __m256i xhi = _mm256_set1_epi32(w), yhi = _mm256_set1_epi32(h);
    const __m256i step = _mm256_set1_epi32((int)fstep), x0v = _mm256_set1_epi32(X0), y0v = _mm256_set1_epi32(Y0);
    const int base = PAD * (int)fstep + PAD * 3;
    int x = 0;
    for (; x + 10 <= dw; x += 8) { /* 16-byte stores: 2 pixels of room past the 8 */
        __m256i vx = _mm256_srai_epi32(_mm256_add_epi32(x0v, _mm256_loadu_si256((const __m256i *)(adelta + x))), 5);
        __m256i vy = _mm256_srai_epi32(_mm256_add_epi32(y0v, _mm256_loadu_si256((const __m256i *)(bdelta + x))), 5);
        __m256i sx = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(vx, 5), lo), xhi);
        __m256i sy = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(vy, 5), lo), yhi);
        __m256i off = _mm256_add_epi32(_mm256_mullo_epi32(sy, step), _mm256_add_epi32(sx, _mm256_add_epi32(sx, sx)));
        __m256i tab = _mm256_or_si256(_mm256_and_si256(vx, m31), _mm256_slli_epi32(_mm256_and_si256(vy, m31), 5));
        int o[8], t[8];
        _mm256_storeu_si256((__m256i *)o, off);
        _mm256_storeu_si256((__m256i *)t, tab);
        __m256i v[4];
        for (int i = 0; i < 4; i++)
            v[i] = blend2(f + base + o[2 * i], f + base + o[2 * i + 1], fstep, t[2 * i], t[2 * i + 1], shuf, half);
        __m256i p = _mm256_packus_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        p = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(p, order), pack);
        _mm_storeu_si128((__m128i *)(d + 3 * x), _mm256_castsi256_si128(p));
        _mm_storeu_si128((__m128i *)(d + 3 * x + 12), _mm256_extracti128_si256(p, 1));
    }
    for (; x < dw; x++)
        pixel(f, fstep, h, w, (int)((unsigned)X0 + (unsigned)adelta[x]) >> 5,
              (int)((unsigned)Y0 + (unsigned)bdelta[x]) >> 5, d + 3 * x);
}

/* 0 done, -1 out of memory. */
static int warp(const uint8_t *src, int h, int w, uint8_t *dst, int dh, int dw, const double *m,
                int border, const uint8_t *cval) {
    long fstep;
    uint8_t *f = framed(src, h, w, border, cval, &fstep);
    int *adelta = malloc(sizeof(int) * 2 * (size_t)dw);
    if (f == NULL || adelta == NULL) {
        free(f);
        free(adelta);
        return -1;
    }
    int *bdelta = adelta + dw;
    for (int x = 0; x < dw; x++) {
        adelta[x] = cv_round(m[0] * x * 1024);
        bdelta[x] = cv_round(m[3] * x * 1024);
    }
    for (int y = 0; y < dh; y++) {
        int X0 = (int)((unsigned)cv_round((m[1] * y + m[2]) * 1024) + 16u);
        int Y0 = (int)((unsigned)cv_round((m[4] * y + m[5]) * 1024) + 16u);
        warp_row(f, fstep, h, w, dst + (long)y * dw * 3, dw, X0, Y0, adelta, bdelta);
    }
    free(adelta);
    free(f);
    return 0;
}
#endif

static int kernel_ready = -1; /* -1 unknown, 0 no (no AVX2, or not built for this CPU), 1 yes */

static int ready(void) {
    if (kernel_ready < 0) {
#if HAVE_KERNEL
        __builtin_cpu_init();
        kernel_ready = __builtin_cpu_supports("avx2") ? 1 : 0;
        if (kernel_ready) init_tables();
#else
        kernel_ready = 0;
#endif
    }
    return kernel_ready;
}

PyDoc_STRVAR(available_doc, "available() -> bool: whether this CPU runs the kernel (AVX2).");

static PyObject *available(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(ready());
}

PyDoc_STRVAR(affine_doc,
             "affine_rgb(src, h, w, dst, dh, dw, m, border, cval): warp C-contiguous uint8 (h, w, 3) src into\n"
             "(dh, dw, 3) dst; m = 6 floats, output (x, y) -> source; border 0 replicate, 1 constant.");

static PyObject *affine_rgb(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer src, dst;
    int h, w, dh, dw, border, c0, c1, c2;
    double m[6];
    if (!PyArg_ParseTuple(args, "y*iiw*ii(dddddd)i(iii)", &src, &h, &w, &dst, &dh, &dw, &m[0], &m[1], &m[2],
                          &m[3], &m[4], &m[5], &border, &c0, &c1, &c2))
        return NULL;
    PyObject *result = NULL;
    if (!ready()) {
        PyErr_SetString(PyExc_RuntimeError, "the warp kernel needs AVX2");
    } else if (h < 1 || w < 1 || dh < 1 || dw < 1 || src.len != (Py_ssize_t)h * w * 3 ||
               dst.len != (Py_ssize_t)dh * dw * 3 || (border != 0 && border != 1) || (long)(w + 2 * PAD) * 3 * (h + 2 * PAD) > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "affine_rgb: sizes, buffers or border do not agree");
    } else {
#if HAVE_KERNEL
        const uint8_t cval[3] = {(uint8_t)c0, (uint8_t)c1, (uint8_t)c2};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = warp(src.buf, h, w, dst.buf, dh, dw, m, border, cval);
        Py_END_ALLOW_THREADS
        if (rc == 0) {
            Py_INCREF(Py_None);
            result = Py_None;
        } else {
            PyErr_NoMemory();
        }
#endif
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"available", available, METH_NOARGS, available_doc},
    {"affine_rgb", affine_rgb, METH_VARARGS, affine_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_warp", "OpenCV's bilinear warpAffine, fused.", -1, methods};

PyMODINIT_FUNC PyInit__warp(void) { return PyModule_Create(&module); }
