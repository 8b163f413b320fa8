/* src/cli/main.c: the qdrop-gpu command line. The only place that calls exit (by returning
 * from main): every failure below is a qd_status turned into one stderr line and a sysexits
 * code (qdrop/status.h).
 *
 * Precedence: defaults < config file < --set (in order) < --device/--out < qd_config_finalize.
 */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_report.h"
#include "core/escape.h"
#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "qdrop/log.h"
#include "qdrop/qdrop.h"
#include "qdrop/status.h"

#define DEFAULT_CONFIG "configs/default.json"

static void usage(FILE *f) {
    fprintf(f,
            "usage: qdrop-gpu [--config FILE] [--set key.path=value]... [options]\n"
            "       qdrop-gpu --inspect MODEL [--config FILE]\n"
            "       qdrop-gpu eval [--config FILE | --from RUN_DIR] [--set key.path=value]... [--out DIR]\n"
            "       qdrop-gpu report RUN_DIR [--out DIR]         render a finished run's report again\n"
            "       qdrop-gpu compare RUN_A RUN_B... [--out DIR] one side-by-side report of several runs\n"
            "\n"
            "Post-training quantization of an ONNX model with QDrop (block reconstruction,\n"
            "AdaRound weights, LSQ activation scales, random drop of activation quantization).\n"
            "\n"
            "options:\n"
            "  --config FILE           JSON run configuration (default: " DEFAULT_CONFIG "; keys in docs/config.md)\n"
            "  --set key.path=value    override one config key, typed by the schema; repeatable\n"
            "                          (e.g. --set quant.w_qconfig.bit=2 --set quant.recon.b_range=[20,2])\n"
            "  --device auto|cpu|cuda  compute device (overrides device.type; auto = cuda when usable)\n"
            "  --out DIR               output directory (overrides output.dir)\n"
            "  --resume                continue from the checkpoint in the output directory\n"
            "  --dry-run               validate config, load model and data, print the plan, the\n"
            "                          memory plan and a time estimate per phase, exit\n"
            "  --inspect MODEL         print units, layers and quantizer placement of an ONNX model\n"
            "\n"
            "eval: evaluate only, no calibration or reconstruction; writes logits_fp32.npy,\n"
            "logits_quant.npy ([N, classes] float32) and eval.json into the output directory\n"
            "  --config FILE           the FP32 model of FILE on data.val_path\n"
            "  --from RUN_DIR          a finished run: its resolved_config.json (unless --config),\n"
            "                          the FP32 model and the quantized model from RUN_DIR/encodings.json;\n"
            "                          outputs go to RUN_DIR unless --out\n"
            "  --log-format text|json  stderr log format (run.log in the output directory is always JSON lines)\n"
            "  --progress auto|always|never\n"
            "                          progress bar on stderr (auto: only when stderr is a terminal;\n"
            "                          otherwise a log line every quant.recon.log_every iterations)\n"
            "  --quiet                 errors only on stderr\n"
            "  --version               print version, git sha and CUDA/cuDNN/cuBLAS versions\n"
            "  --help                  print this help\n"
            "\n"
            "outputs (in the output directory, each written atomically; the results are staged and\n"
            "published together at the end, results.json last; one run at a time per directory):\n"
            "  resolved_config.json run.log results.json report.html report.md plots/ model_qdq.onnx\n"
            "  encodings.json predictions.csv checkpoint.bin\n"
            "\n"
            "exit codes:\n"
            "   0  success\n"
            "  64  usage error (bad command line)\n"
            "  65  data error, or a model using something not supported\n"
            "  66  missing input (config, model or data file not found)\n"
            "  69  requested device unavailable (--device cuda without a usable GPU)\n"
            "  70  internal error (bug, CUDA/cuDNN failure)\n"
            "  74  I/O error (cannot write outputs, disk full, output directory in use by another run)\n"
            "  75  out of memory (device.memory_budget_mb, batch sizes; or process.host_memory_budget too small\n"
            "      even spilling the caches to disk: said before computing)\n"
            "  76  numerical fault (NaN/Inf during reconstruction)\n"
            "  78  configuration error (unknown key, wrong type, value out of range,\n"
            "      output directory holding the input model)\n"
            " 130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the last checkpoint is kept,\n"
            "      continue with --resume (a second signal stops at once)\n");
}

static int fail(qd_status st) {
    const char *m = qd_error_message();
    /* Messages quote names from model files and paths: escape them so the error stays one line
     * and cannot drive the terminal. */
    fputs("qdrop-gpu: error: ", stderr);
    qd_fputs_escaped(m[0] ? m : qd_status_name(st), stderr);
    fputc('\n', stderr);
    return qd_status_exit_code(st);
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "qdrop-gpu: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see qdrop-gpu --help)\n");
    return QD_EXIT_USAGE;
}

static void print_version(void) {
    printf("qdrop-gpu %s (git %s)\n", qd_version(), qd_git_sha());
#ifdef QD_HAVE_CUDA
    char v[512];
    qd_cuda_versions(v, sizeof v);
    printf("CUDA backend: built in%s%s\n", v[0] ? "; " : "", v);
#else
    printf("CUDA backend: not built (host-only build)\n");
#endif
}

enum { OPT_CONFIG = 256, OPT_SET, OPT_DEVICE, OPT_OUT, OPT_RESUME, OPT_DRY, OPT_INSPECT, OPT_LOGFMT, OPT_PROGRESS,
       OPT_QUIET, OPT_VERSION, OPT_HELP, OPT_FROM };

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"config", required_argument, NULL, OPT_CONFIG},   {"set", required_argument, NULL, OPT_SET},
        {"device", required_argument, NULL, OPT_DEVICE},   {"out", required_argument, NULL, OPT_OUT},
        {"resume", no_argument, NULL, OPT_RESUME},         {"dry-run", no_argument, NULL, OPT_DRY},
        {"inspect", required_argument, NULL, OPT_INSPECT}, {"log-format", required_argument, NULL, OPT_LOGFMT},
        {"progress", required_argument, NULL, OPT_PROGRESS}, {"quiet", no_argument, NULL, OPT_QUIET},
        {"version", no_argument, NULL, OPT_VERSION},       {"help", no_argument, NULL, OPT_HELP},
        {"from", required_argument, NULL, OPT_FROM},       {NULL, 0, NULL, 0}};
    /* A file-size limit (ulimit -f) must surface as a failed write (EFBIG -> exit 74 naming the
     * file, temp file removed), not as death by SIGXFSZ with a partial file left behind. */
    signal(SIGXFSZ, SIG_IGN);
    /* Buffers of 1 MiB and more come from mmap and go back to the system when freed. glibc's
     * default raises that threshold to the largest block freed so far, after which freed
     * calibration buffers stay resident in the heap: peak RSS would then exceed the memory plan
     * (docs/memory.md) by up to twice the largest buffer. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    /* subcommands on a finished run's files */
    if (argc > 1 && strcmp(argv[1], "report") == 0) return qd_cli_report(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "compare") == 0) return qd_cli_compare(argc - 1, argv + 1);
    const char *config_path = NULL, *device = NULL, *out = NULL, *inspect = NULL, *from = NULL;
    int eval_cmd = 0; /* `qdrop-gpu eval ...` (the one positional word allowed) */
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int nsets = 0, want_help = 0, want_version = 0;
    char *command = qd_cli_command_line(argc, argv);
    qd_run_options opts = {0, 0, 0, 0, QD_PROGRESS_AUTO, command};
    if (!sets || !command) { free(sets); free(command); return fail(qd_errorf(QD_ERR_INTERNAL, "out of host memory")); }

    opterr = 0; /* our own one-line messages */
    int c, rc = -1;
    while (rc < 0 && (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_CONFIG: config_path = optarg; break;
        case OPT_SET: sets[nsets++] = optarg; break;
        case OPT_DEVICE:
            if (strcmp(optarg, "auto") && strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                rc = usage_error("--device: expected auto, cpu or cuda, got '%s'", optarg);
            device = optarg;
            break;
        case OPT_OUT:
            out = optarg;
            if (!out[0]) rc = usage_error("--out: expected a directory, got an empty path%s", "");
            break;
        case OPT_RESUME: opts.resume = 1; break;
        case OPT_DRY: opts.dry_run = 1; break;
        case OPT_INSPECT: inspect = optarg; break;
        case OPT_FROM: from = optarg; break;
        case OPT_LOGFMT:
            if (strcmp(optarg, "text") == 0) opts.log_json = 0;
            else if (strcmp(optarg, "json") == 0) opts.log_json = 1;
            else rc = usage_error("--log-format: expected text or json, got '%s'", optarg);
            break;
        case OPT_PROGRESS:
            if (strcmp(optarg, "auto") == 0) opts.progress = QD_PROGRESS_AUTO;
            else if (strcmp(optarg, "always") == 0) opts.progress = QD_PROGRESS_ALWAYS;
            else if (strcmp(optarg, "never") == 0) opts.progress = QD_PROGRESS_NEVER;
            else rc = usage_error("--progress: expected auto, always or never, got '%s'", optarg);
            break;
        case OPT_QUIET: opts.quiet = 1; break;
        case OPT_VERSION: want_version = 1; break;
        case 'h':
        case OPT_HELP: want_help = 1; break;
        case ':': rc = usage_error("option %s needs a value", argv[optind - 1]); break;
        default: rc = usage_error("unknown option '%s'", argv[optind - 1]); break;
        }
    }
    /* getopt_long moves non-options to the end: "eval" may come first or among the options */
    if (rc < 0 && optind < argc && strcmp(argv[optind], "eval") == 0) {
        eval_cmd = 1;
        optind++;
    }
    if (rc < 0 && optind < argc) rc = usage_error("unexpected argument '%s'", argv[optind]);
    if (rc < 0 && from && !eval_cmd) rc = usage_error("%s: only valid with the eval command (qdrop-gpu eval --from RUN_DIR)", "--from");
    if (rc < 0 && eval_cmd && (opts.resume || opts.dry_run || inspect))
        rc = usage_error("%s: not valid with the eval command", opts.resume ? "--resume" : opts.dry_run ? "--dry-run" : "--inspect");
    if (rc < 0 && want_help) { usage(stdout); rc = 0; }
    if (rc < 0 && want_version) { print_version(); rc = 0; }
    if (rc >= 0) { free(sets); free(command); return rc; }

    qd_log_set_stderr(opts.log_json, opts.quiet);
    qd_progress_set_mode(opts.progress);

    qd_config cfg;
    qd_config_defaults(&cfg);
    qd_status st = QD_OK;
    char from_config[4096 + 32];
    if (!config_path && from) {
        /* eval --from RUN_DIR: the run's own resolved configuration (absolute paths) */
        snprintf(from_config, sizeof from_config, "%s/resolved_config.json", from);
        st = qd_config_load_file(&cfg, from_config);
        if (st == QD_ERR_NOINPUT) {
            qd_error_clear();
            st = qd_errorf(QD_ERR_NOINPUT, "%s: not found (--from needs the output directory of a finished run, or "
                           "pass --config)", from_config);
        }
    } else if (config_path) {
        st = qd_config_load_file(&cfg, config_path);
    } else {
        st = qd_config_load_file(&cfg, DEFAULT_CONFIG);
        if (st == QD_ERR_NOINPUT) {
            qd_error_clear();
            if (inspect) { /* --inspect needs no config file: the defaults give the bit widths */
                qd_config_defaults(&cfg);
                st = QD_OK;
            } else {
                st = qd_errorf(QD_ERR_NOINPUT, "%s: default config not found (no --config given; run from the "
                               "repository root or pass --config FILE)", DEFAULT_CONFIG);
            }
        }
    }
    for (int i = 0; st == QD_OK && i < nsets; i++) st = qd_config_set(&cfg, sets[i]);
    free(sets);
    if (st == QD_OK && device)
        cfg.device = strcmp(device, "cpu") == 0 ? QD_DEVICE_CPU : strcmp(device, "cuda") == 0 ? QD_DEVICE_CUDA : QD_DEVICE_AUTO;
    if (st == QD_OK && out) {
        if (strlen(out) >= sizeof cfg.out_dir) st = qd_errorf(QD_ERR_USAGE, "--out: path too long");
        else snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", out);
    }
    if (st == QD_OK && inspect) {
        if (strlen(inspect) >= sizeof cfg.model_path) st = qd_errorf(QD_ERR_USAGE, "--inspect: path too long");
        else snprintf(cfg.model_path, sizeof cfg.model_path, "%s", inspect);
    }
    if (st == QD_OK) st = qd_config_finalize(&cfg);
    if (st == QD_OK)
        st = eval_cmd ? qd_eval(&cfg, from, &opts) : inspect ? qd_inspect(cfg.model_path, &cfg) : qd_run(&cfg, &opts);
    qd_progress_done();
    free(command);
    if (st != QD_OK) return fail(st);
    return 0;
}
