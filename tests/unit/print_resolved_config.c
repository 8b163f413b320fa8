/* tests/unit/print_resolved_config.c: print the resolved config (what a run writes to
 * resolved_config.json) of the built-in defaults, or of a config file given as the argument,
 * for tests/config_docs_test.py. model.path is set to a placeholder when the file has none, so
 * qd_config_finalize can run; nothing is read besides the config file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrop/config.h"

int main(int argc, char **argv) {
    qd_config c;
    qd_config_defaults(&c);
    if (argc > 1 && qd_config_load_file(&c, argv[1]) != QD_OK) {
        fprintf(stderr, "print_resolved_config: %s\n", qd_error_message());
        return 1;
    }
    if (!c.model_path[0]) snprintf(c.model_path, sizeof c.model_path, "/placeholder/model.onnx");
    if (qd_config_finalize(&c) != QD_OK) {
        fprintf(stderr, "print_resolved_config: %s\n", qd_error_message());
        return 1;
    }
    char *js = qd_config_to_json(&c);
    if (!js) return 1;
    fputs(js, stdout);
    free(js);
    return 0;
}
