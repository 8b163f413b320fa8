# BERT (src/bert/): safetensors + HF directory loader, WordPiece tokenizer vs HuggingFace on
# every STS-B test sentence, one encoder layer forward/backward vs PyTorch + finite differences,
# GLUE/STS metrics and readers, and the all-MiniLM-L6-v2 STS-B end-to-end check (skips with 77
# until scripts/install_deps.sh or tools/fetch_minilm.sh has fetched the model into models/;
# FP32 and W8A8 min/max on all 1379 test pairs, about 40 s of one core, so it runs in CI).
qd_add_test(test_bert_safetensors SOURCES unit/test_bert_safetensors.c LABELS unit TIMEOUT 60)
qd_add_test(test_bert_tokenizer SOURCES unit/test_bert_tokenizer.c LABELS golden TIMEOUT 120)
qd_add_test(test_bert_layer SOURCES unit/test_bert_layer.c LABELS golden grad TIMEOUT 120)
qd_add_test(test_bert_metrics SOURCES unit/test_bert_metrics.c LABELS unit TIMEOUT 60)
qd_add_test(test_bert_stsb SOURCES unit/test_bert_stsb.c LABELS e2e TIMEOUT 900)

# Benchmark (not a test): BERT-base layer forward+backward on the CPU, prints JSON.
if(QD_BUILD_BENCH)
  add_executable(bench_bert ${CMAKE_SOURCE_DIR}/bench/bench_bert.c)
  target_link_libraries(bench_bert PRIVATE qdrop)
  target_compile_options(bench_bert PRIVATE -Wall -Wextra -ffp-contract=off -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE)
  if(QD_HAVE_CUDA)
    set_target_properties(bench_bert PROPERTIES LINKER_LANGUAGE CUDA)
  endif()
endif()

# SST-2 classifier path (data.task sst2): tiny random BertForSequenceClassification fixture
# (tests/fixtures/bert/sst2_tiny, tools/make_bert_sst2_fixture.py) vs a numpy float64 forward:
# HF token ids, logits, all 872 dev predictions; then the CLI with mode qdrop writes the
# accuracy block of results.json.
qd_add_test(test_bert_sst2 SOURCES unit/test_bert_sst2.c LABELS golden TIMEOUT 120)
qd_add_script_test(bert_sst2_cli COMMAND bash ${CMAKE_SOURCE_DIR}/tests/bert_sst2_cli.sh LABELS e2e TIMEOUT 300)

# The encoder as a qd_graph (src/bert/bert_graph.c): FP32 and quantized parity with the C
# encoder on a tiny random BERT, units and §8.8 quantizer placement.
qd_add_test(test_bert_graph SOURCES unit/test_bert_graph.c LABELS unit TIMEOUT 60)

# BERT through the one engine (tiny random SST-2 classifier, seconds of CPU each): kill -9 in the
# middle of a unit + --resume gives byte-identical outputs; a NaN loss stops the run (76) or is
# retried; --device cuda without a GPU exits 69; early stop; dry run.
qd_add_script_test(resume_bert COMMAND bash ${CMAKE_SOURCE_DIR}/tests/resume_test.sh bert LABELS e2e TIMEOUT 600)
qd_add_script_test(nan_fault_bert COMMAND bash ${CMAKE_SOURCE_DIR}/tests/nan_test.sh bert LABELS e2e TIMEOUT 600)
qd_add_script_test(bert_engine COMMAND bash ${CMAKE_SOURCE_DIR}/tests/bert_engine_test.sh LABELS e2e TIMEOUT 600)
# The QDQ export of the quantized encoder graph in ONNX Runtime (tests/bert_export_check.py).
qd_add_script_test(bert_export COMMAND bash ${CMAKE_SOURCE_DIR}/tests/bert_export_test.sh LABELS e2e TIMEOUT 120)
# ONNX Runtime redoes the quantized evaluation of a run (tiny SST-2 classifier, output.logits +
# output.export_onnx, tools/bert_ort_check.py): the same predictions and accuracy as the engine.
qd_add_script_test(bert_ort COMMAND bash ${CMAKE_SOURCE_DIR}/tests/bert_ort_test.sh LABELS e2e TIMEOUT 120)

# Developer tool (not a test): every intermediate value of a BERT run's quantized encoder for one
# batch, for tools/bert_ort_check.py --trace (first node where ONNX Runtime differs).
add_executable(bert_trace ${CMAKE_SOURCE_DIR}/tools/bert_trace.c)
target_link_libraries(bert_trace PRIVATE qdrop)
target_compile_options(bert_trace PRIVATE -Wall -Wextra -Werror -ffp-contract=off -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE)
if(QD_HAVE_CUDA)
  set_target_properties(bert_trace PROPERTIES LINKER_LANGUAGE CUDA)
endif()
