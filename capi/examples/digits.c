/* Runs a caq bundle through libcaq, on the board or on the functional model, and checks every
 * output code against the expected codes (the golden model's, written by the caller).
 *
 *   digits sim|uio CONFIG.toml BUNDLE.caqb IMAGES.u8 EXPECTED.i32 COUNT [GATE|-|cascade=CLASS|network=CLASS]
 *   digits errors CONFIG.toml CORRUPT.caqb GOOD.caqb
 *
 * IMAGES.u8 holds COUNT inputs of input_len bytes each; EXPECTED.i32 COUNT outputs of output_len
 * little-endian int32 codes. GATE runs at a gate of the bundle, `-` at the top level, and
 * cascade=CLASS / network=CLASS each image under that input-adaptive policy of the bundle (the
 * setting it used printed per image). Exit status 0 when every code matches, 1 otherwise; `errors`
 * shows libcaq's error reporting: a missing device, a corrupt bundle, a bad gate name, a short
 * input, an unknown context class, a bad policy kind.
 * Build: cc -std=c99 -Wall -Wextra -Icapi/include digits.c -Ltarget/debug -lcaq */
#include "caq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, caq_status s) {
  fprintf(stderr, "%s: %s: %s\n", what, caq_status_name(s), caq_last_error());
  return 1;
}

static void *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc(n > 0 ? (size_t)n : 1);
  *len = fread(buf, 1, (size_t)n, f);
  fclose(f);
  return buf;
}

/* Each failure prints one line: "<call>: <status name>: <message>". */
static int show_errors(const char *config, const char *corrupt, const char *good) {
  caq_accel *acc = NULL;
  caq_status s = caq_open_uio(config, "no-such-accelerator", NULL, &acc);
  printf("missing device: %s: %s\n", caq_status_name(s), caq_last_error());
  s = caq_open_sim(config, &acc);
  if (s != CAQ_OK) return fail("caq_open_sim", s);
  s = caq_load_bundle(acc, corrupt);
  printf("corrupt bundle: %s: %s\n", caq_status_name(s), caq_last_error());
  s = caq_load_bundle(acc, good);
  if (s != CAQ_OK) return fail("caq_load_bundle", s);
  s = caq_apply_gate(acc, "no-such-gate");
  printf("bad gate name: %s: %s\n", caq_status_name(s), caq_last_error());
  uint8_t input[1] = {0};
  int32_t output[256];
  s = caq_infer(acc, input, 1, output, 256, NULL);
  printf("short input: %s: %s\n", caq_status_name(s), caq_last_error());
  uint8_t image[64] = {0};
  s = caq_infer_adaptive(acc, "no-such-class", CAQ_ADAPTIVE_CASCADE, image, sizeof image, output,
                         256, NULL, NULL, 0);
  printf("bad class: %s: %s\n", caq_status_name(s), caq_last_error());
  s = caq_infer_adaptive(acc, "battery-low", 7, image, sizeof image, output, 256, NULL, NULL, 0);
  printf("bad kind: %s: %s\n", caq_status_name(s), caq_last_error());
  caq_close(acc);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "errors") == 0) return show_errors(argv[2], argv[3], argv[4]);
  if (argc < 7 || argc > 8) {
    fprintf(stderr, "usage: %s sim|uio CONFIG BUNDLE IMAGES EXPECTED COUNT [GATE|-|cascade=CLASS|network=CLASS]\n"
                    "       %s errors CONFIG CORRUPT_BUNDLE GOOD_BUNDLE\n", argv[0], argv[0]);
    return 2;
  }
  const char *gate = argc == 8 && strcmp(argv[7], "-") != 0 ? argv[7] : NULL;
  /* "cascade=CLASS" or "network=CLASS": that input-adaptive policy of the bundle, per image. */
  const char *adaptive_class = NULL;
  int kind = CAQ_ADAPTIVE_CASCADE;
  if (gate && strncmp(gate, "cascade=", 8) == 0) {
    adaptive_class = gate + 8;
  } else if (gate && strncmp(gate, "network=", 8) == 0) {
    adaptive_class = gate + 8;
    kind = CAQ_ADAPTIVE_NETWORK;
  }
  if (adaptive_class) gate = NULL;
  size_t count = (size_t)strtoul(argv[6], NULL, 10);

  caq_accel *acc = NULL;
  caq_status s = strcmp(argv[1], "uio") == 0 ? caq_open_uio(argv[2], NULL, NULL, &acc)
                                              : caq_open_sim(argv[2], &acc);
  if (s != CAQ_OK) return fail("open", s);
  if ((s = caq_load_bundle(acc, argv[3])) != CAQ_OK) return fail("caq_load_bundle", s);
  caq_model_info info;
  if ((s = caq_get_model_info(acc, &info)) != CAQ_OK) return fail("caq_get_model_info", s);
  printf("libcaq %s: %zu inputs (%zux%zux%zu), %zu outputs, %zu weight layers, %zu gates\n",
         caq_version(), info.input_len, info.input_channels, info.input_height, info.input_width,
         info.output_len, info.weight_layers, info.gate_count);
  for (size_t g = 0; g < info.gate_count; g++) {
    const char *name;
    if ((s = caq_gate_name(acc, g, &name)) != CAQ_OK) return fail("caq_gate_name", s);
    printf("gate %zu: %s\n", g, name);
  }
  if (gate) {
    if ((s = caq_apply_gate(acc, gate)) != CAQ_OK) return fail("caq_apply_gate", s);
  } else {
    /* Every layer at the top level. */
    uint8_t bits[64];
    if (info.weight_layers > 64) return 1;
    for (size_t i = 0; i < info.weight_layers; i++) bits[i] = info.levels[0];
    if ((s = caq_set_bits(acc, bits, info.weight_layers)) != CAQ_OK) return fail("caq_set_bits", s);
  }
  uint8_t bits[64];
  if ((s = caq_get_bits(acc, bits, info.weight_layers)) != CAQ_OK) return fail("caq_get_bits", s);
  printf("bits:");
  for (size_t i = 0; i < info.weight_layers; i++) printf(" %u", bits[i]);
  printf("\n");
  if ((s = caq_attach_meter(acc, CAQ_METER_AUTO, 1.0)) != CAQ_OK) return fail("caq_attach_meter", s);

  size_t images_len = 0, expected_len = 0;
  uint8_t *images = read_file(argv[4], &images_len);
  int32_t *expected = read_file(argv[5], &expected_len);
  if (!images || !expected || images_len < count * info.input_len ||
      expected_len < count * info.output_len * sizeof(int32_t)) {
    fprintf(stderr, "%s or %s: missing or short for %zu images\n", argv[4], argv[5], count);
    return 2;
  }
  int32_t *out = malloc(info.output_len * sizeof(int32_t));
  size_t equal = 0;
  double energy = 0.0;
  uint64_t cycles = 0;
  int source = 0;
  for (size_t i = 0; i < count; i++) {
    caq_report r;
    uint8_t used[64];
    if (adaptive_class) {
      s = caq_infer_adaptive(acc, adaptive_class, kind, images + i * info.input_len,
                             info.input_len, out, info.output_len, &r, used, sizeof used);
      if (s != CAQ_OK) return fail("caq_infer_adaptive", s);
    } else {
      s = caq_infer(acc, images + i * info.input_len, info.input_len, out, info.output_len, &r);
      if (s != CAQ_OK) return fail("caq_infer", s);
    }
    int same = memcmp(out, expected + i * info.output_len, info.output_len * sizeof(int32_t)) == 0;
    equal += (size_t)same;
    size_t best = 0;
    for (size_t k = 1; k < info.output_len; k++)
      if (out[k] > out[best]) best = k;
    printf("image %zu: class %zu, codes", i, best);
    for (size_t k = 0; k < info.output_len; k++) printf(" %d", out[k]);
    if (adaptive_class) {
      printf(", bits");
      for (size_t k = 0; k < info.weight_layers; k++) printf("%s%u", k ? "/" : " ", used[k]);
    }
    printf("%s\n", same ? "" : "  MISMATCH");
    energy += r.energy_j;
    cycles += r.cycles;
    source = r.energy_source;
  }
  printf("%zu/%zu outputs equal to golden; %.1f cycles and %.3g uJ (%s) per inference\n", equal,
         count, count ? (double)cycles / (double)count : 0.0,
         count ? energy / (double)count * 1e6 : 0.0,
         source == 2 ? "measured" : source == 1 ? "energy model" : "no meter");
  free(out);
  free(images);
  free(expected);
  caq_close(acc);
  return equal == count ? 0 : 1;
}
