# tests/fuzz.cmake: libFuzzer targets (ASan + UBSan) for every parser of untrusted input, and the
# CTest entry that runs them for a short bounded time. docs/reliability.md explains how to run
# longer campaigns. Build (clang required):
#   CC=clang cmake -S . -B build-fuzz -DQD_FUZZ=ON -DQD_CUDA=OFF && cmake --build build-fuzz -j2
# With QD_FUZZ=ON the top-level CMakeLists.txt compiles everything (every layer library) with
# -fsanitize=fuzzer-no-link,address,undefined, so coverage and ASan reach into the library.

# Smoke run of every target (tests/fuzz/run_fuzz.sh configures its own clang build dir; exit 77
# when clang is missing). Label slow: not part of the default test run.
# In a QD_FUZZ build it reuses this build dir; elsewhere it configures <build>/fuzz with clang.
if(QD_FUZZ)
  set(_qd_fuzz_dir ${CMAKE_BINARY_DIR})
else()
  set(_qd_fuzz_dir ${CMAKE_BINARY_DIR}/fuzz)
endif()
qd_add_script_test(fuzz_smoke
  COMMAND env FUZZ_SECONDS=10 FUZZ_BUILD_DIR=${_qd_fuzz_dir} bash ${CMAKE_SOURCE_DIR}/tests/fuzz/run_fuzz.sh
  LABELS fuzz slow
  TIMEOUT 1800)

if(QD_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "QD_FUZZ=ON needs clang (libFuzzer): CC=clang cmake -DQD_FUZZ=ON ...")
  endif()

  # Targets whose parser is not written yet are skipped (the team adds parsers incrementally):
  # a target is built when a source under src/ defines its entry point.
  file(GLOB_RECURSE _qd_fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/*.c)
  function(_qd_fuzz_defines symbol outvar)
    set(found OFF)
    foreach(f ${_qd_fuzz_srcs})
      file(STRINGS ${f} hit REGEX "^[a-z_ ]*[ *]${symbol}\\(")
      if(hit)
        set(found ON)
        break()
      endif()
    endforeach()
    set(${outvar} ${found} PARENT_SCOPE)
  endfunction()

  function(qd_add_fuzzer name)
    cmake_parse_arguments(F "" "" "SOURCES;DEFINES" ${ARGN})
    add_executable(${name} ${F_SOURCES})
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/fuzz)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer -Wall -Wextra -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE)
    target_compile_definitions(${name} PRIVATE ${F_DEFINES})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE qdrop)
    set_property(GLOBAL APPEND PROPERTY QD_FUZZERS ${name})
  endfunction()

  set(_fz ${CMAKE_SOURCE_DIR}/tests/fuzz)
  qd_add_fuzzer(fuzz_config SOURCES ${_fz}/fuzz_config.c)
  qd_add_fuzzer(fuzz_jpeg SOURCES ${_fz}/fuzz_jpeg.c)
  qd_add_fuzzer(fuzz_npy SOURCES ${_fz}/fuzz_npy.c)
  qd_add_fuzzer(fuzz_checkpoint SOURCES ${_fz}/fuzz_checkpoint.c)

  _qd_fuzz_defines(qd_onnx_load _have_onnx)
  if(_have_onnx)
    # the full --inspect pipeline only once every pass it calls is defined
    set(_defs QD_FUZZ_HAVE_PREPARE=1)
    foreach(_pass qd_graph_prepare qd_graph_simplify qd_graph_infer_shapes qd_graph_fold_bn qd_graph_find_units
                  qd_graph_place_quantizers qd_graph_toposort)
      _qd_fuzz_defines(${_pass} _have_pass)
      if(NOT _have_pass)
        set(_defs "")
        message(STATUS "qdrop fuzz: ${_pass} not defined yet: fuzz_onnx covers the reader only")
        break()
      endif()
    endforeach()
    qd_add_fuzzer(fuzz_onnx SOURCES ${_fz}/fuzz_onnx.c DEFINES ${_defs})
  else()
    message(STATUS "qdrop fuzz: qd_onnx_load not defined under src/ yet: fuzz_onnx not built")
  endif()

  # BERT inputs (src/bert): safetensors header and WordPiece tokenizer.
  foreach(_t safetensors tokenizer)
    if(EXISTS ${_fz}/fuzz_${_t}.c)
      if(_t STREQUAL "safetensors")
        _qd_fuzz_defines(qd_st_open_mem _have)
      else()
        _qd_fuzz_defines(qd_wp_load _have)
      endif()
      if(_have)
        qd_add_fuzzer(fuzz_${_t} SOURCES ${_fz}/fuzz_${_t}.c)
      else()
        message(STATUS "qdrop fuzz: src/bert entry point for ${_t} not found: fuzz_${_t} not built")
      endif()
    endif()
  endforeach()

  get_property(_all GLOBAL PROPERTY QD_FUZZERS)
  add_custom_target(fuzzers DEPENDS ${_all})
  # run_fuzz.sh reads this list to know which targets exist in this tree.
  string(REPLACE ";" "\n" _lines "${_all}")
  file(WRITE ${CMAKE_BINARY_DIR}/fuzz_targets.txt "${_lines}\n")
endif()
