/* ggml's own Q4_K, for tools/make_quant_reference.py: reads float32 values
 * (a whole number of 256-value blocks) on stdin, writes ggml's block_q4_K
 * bytes (quantize_row_q4_K_ref) and then the float32 values those bytes
 * dequantize to (dequantize_row_q4_K) on stdout, little-endian.
 *
 * Built against an unmodified ggml source tree (ggml/ of llama.cpp, MIT
 * licensed), whose ggml-quants.c is compiled alongside this file:
 *
 *   cc -O2 -ffp-contract=off -I GGML/include -I GGML/src \
 *      tools/ggml_q4_k_reference.c GGML/src/ggml-quants.c -lm
 *
 * -ffp-contract=off keeps every a*b+c rounded twice, as ggml's x86 builds do
 * (ggml-base gets no -march flags); assertions stay on, so ggml's own
 * assert(fabsf(fval) <= 4194303.f) in nearest_int checks every input.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ggml-quants.h"

/* ggml.c's functions that ggml-quants.c names outside the paths used here
 * (row validation, error messages); never reached by this program. */
void ggml_abort(const char* file, int line, const char* fmt, ...) {
  fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt);
  abort();
}
size_t ggml_type_size(enum ggml_type type) { (void)type; abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void)type; (void)ne; abort(); }
const char* ggml_type_name(enum ggml_type type) { (void)type; abort(); }

int main(void) {
  size_t cap = 1 << 16, n = 0;
  float* x = malloc(cap * sizeof(float));
  size_t got;
  while ((got = fread(x + n, sizeof(float), cap - n, stdin)) > 0) {
    n += got;
    if (n == cap) x = realloc(x, (cap *= 2) * sizeof(float));
  }
  if (n == 0 || n % QK_K != 0) {
    fprintf(stderr, "ggml_q4_k_reference: %zu values are not a whole number of blocks of %d\n", n, QK_K);
    return 1;
  }
  const size_t blocks = n / QK_K;
  block_q4_K* y = malloc(blocks * sizeof(block_q4_K));
  float* back = malloc(n * sizeof(float));
  quantize_row_q4_K_ref(x, y, (int64_t)n);
  dequantize_row_q4_K(y, back, (int64_t)n);
  fwrite(y, sizeof(block_q4_K), blocks, stdout);
  fwrite(back, sizeof(float), n, stdout);
  return 0;
}
